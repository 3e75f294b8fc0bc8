package main

import (
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/testkit"
)

// check-config explains the nodes (health, retries, timeouts) and the
// limits of a configuration.
func TestCheckConfigNodesAndLimits(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	for _, tc := range []struct {
		name, extra string
		want, never []string
	}{
		{"one node, no limits", "clickhouse: {url: http://127.0.0.1:1, mode: bearer, audience: clickhouse}\n", []string{
			"\n  - a node must accept the connection within 5s (connect_timeout) and answer with headers within 5m0s (response_timeout: raise it for queries that think longer before their first row); past them the client gets a ClickHouse-style error\n",
			"\nLimits per person (gateway and MCP together):\n  - default: nothing set (MCP tool calls: at most 4 at once per person, mcp.max_concurrent_queries)\n",
		}, []string{"nodes (replicas", "health:"}},
		{"three nodes and limits", `clickhouse:
  urls: [http://ch-1:8123, http://ch-2:8123, http://ch-3:8123]
  mode: http_auth
  user: admin
  provisioning: {create_users: true}
  health: {interval: 10s, timeout: 1s, max_replica_delay: 5m}
  retries: 1
  response_timeout: 1h
limits:
  default: {max_concurrent_queries: 4, max_queue: 4, max_queue_time: 30s}
  roles: {admin: {max_concurrent_queries: 0}}
  people: {"bot@example.com": {requests_per_minute: 60, networks: [10.0.0.0/8]}}
`, []string{
			"\n  - 3 nodes (replicas of one cluster): http://ch-1:8123, http://ch-2:8123, http://ch-3:8123; each request goes to the node with the fewest requests in flight",
			"\n  - health: GET /ping every 10s (timeout 1s); a node that fails it gets no requests until it answers again; /replicas_status too: a node whose replicas lag more than 5m0s gets no requests\n",
			"\n  - a request whose node fails before any byte of it was written is tried on up to 1 other nodes; one that may have run is never repeated\n",
			"\n  - provisioning creates users and grants roles through one node: keep users in replicated access storage",
			"and answer with headers within 1h0m0s",
			"\n  - default: max_concurrent_queries 4, max_queue 4, max_queue_time 30s\n",
			"\n  - role admin: max_concurrent_queries unlimited\n",
			"\n  - person bot@example.com: requests_per_minute 60, networks 10.0.0.0/8\n",
		}, []string{"mcp.max_concurrent_queries"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := validConfig(t, dir, key, tc.extra)
			code, stdout, stderr := cli(t, "check-config", "--config", path)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout, w) {
					t.Errorf("output lacks %q:\n%s", w, stdout)
				}
			}
			for _, n := range tc.never {
				if strings.Contains(stdout, n) {
					t.Errorf("output has %q:\n%s", n, stdout)
				}
			}
		})
	}
}

// check-config shows mcp.policy: the entry for the example groups' roles,
// then every entry.
func TestCheckConfigMCPPolicy(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	path := validConfig(t, dir, testkit.NewKey(t, jose.ES256, "k1"), `clickhouse: {url: http://127.0.0.1:1, mode: mapped, accounts: [{role: analysts, user: r}]}
mcp:
  policy:
    - {roles: [analysts], tools: [list_databases, run_query], databases: [sales]}
`)
	code, stdout, stderr := cli(t, "check-config", "--config", path, "--groups", "ch-analysts")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	want := "\nMCP policy (mcp.policy; with the example roles [analysts, mcp_reader]):\n  - roles analysts, mcp_reader: mcp.policy[0] applies: tools list_databases, run_query; databases sales"
	if !strings.Contains(stdout, want) || strings.Count(stdout, "decide what the SQL may read or change") != 1 {
		t.Errorf("output lacks %q once:\n%s", want, stdout)
	}
}
