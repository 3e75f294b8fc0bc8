package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// policyConfig is a clickgate configuration with mcp.policy: analysts
// get the listing tools over default and sales*, everyone else all tools
// but explain_query.
func policyConfig(t *testing.T, dir, listen string, key *testkit.Key, ch *chtest.Server) string {
	cfg := fmt.Sprintf(`server: {listen: %s, public_url: http://%s}
token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse], username_claim: email}
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//", common: [mcp_reader]}
clickhouse:
  url: %s
  mode: mapped
  accounts:
    - {role: admin, user: %s, password: %s}
    - {role: mcp_reader, user: %s, password: %s}
mcp:
  policy:
    - {roles: [analysts], tools: [list_databases, list_tables, describe_table], databases: [default, "sales*"]}
    - {deny_tools: [explain_query]}
`, listen, listen, issuer, testkit.WriteJWKS(t, dir, key), ch.HTTPURL,
		chtest.AdminUser, chtest.AdminPassword, chtest.ReaderUser, chtest.ReaderPassword)
	path := filepath.Join(dir, "clickgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func policyClickHouse(t *testing.T) *chtest.Server {
	ch := chtest.Start(t, chtest.Options{})
	for _, q := range []string{"CREATE DATABASE sales", "CREATE DATABASE secret",
		"CREATE TABLE sales.orders (id UInt64) ENGINE = Memory", "CREATE TABLE secret.keys (k String) ENGINE = Memory"} {
		ch.Query(t, chtest.AdminUser, chtest.AdminPassword, q)
	}
	return ch
}

// 'clickgate serve' with mcp.policy, seen through the official TypeScript
// SDK client: alice (analysts) and bob (admin) get different tools on the
// one stateless endpoint, alice's hidden run_query is refused as a tool
// error, and completions offer each only what their policy shows.
func TestPolicyTypeScriptSDK(t *testing.T) {
	testkit.NodeModule(t, "@modelcontextprotocol/sdk/package.json")
	ch := policyClickHouse(t)
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	listen := testkit.FreeAddr(t)
	cmd := exec.Command(testkit.Clickgate, "serve", "--config", policyConfig(t, dir, listen, key, ch))
	logs := &testkit.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp, err := http.Get("http://" + listen + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("clickgate serve did not come up:\n%s", logs)
		}
	}
	resource := "http://" + listen + "/mcp"
	input, _ := json.Marshal(map[string]any{"url": resource, "tokens": map[string]string{
		"alice": key.Sign(t, testkit.Claims(issuer, resource, "alice@example.com", "ch-analysts")),
		"bob":   key.Sign(t, testkit.Claims(issuer, resource, "bob@example.com", "ch-admin")),
	}})
	script, _ := filepath.Abs("policy-client.mjs")
	stdout, stderr, err := run(t, 60*time.Second, os.Environ(), string(input), "node", script)
	if err != nil {
		t.Fatalf("policy-client.mjs: %v\nstderr:\n%s\nstdout:\n%s\nclickgate:\n%s", err, stderr, stdout, logs)
	}
	var out map[string]struct {
		Completions bool     `json:"completions"`
		Tools       []string `json:"tools"`
		RunQuery    struct {
			IsError bool   `json:"isError"`
			Text    string `json:"text"`
		} `json:"runQuery"`
		Databases    []string `json:"databases"`
		SecretTables []string `json:"secretTables"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	alice, bob := out["alice"], out["bob"]
	if !alice.Completions || strings.Join(alice.Tools, ",") != "describe_table,list_databases,list_tables" ||
		!alice.RunQuery.IsError || !strings.Contains(alice.RunQuery.Text, "not available to you (mcp.policy[0])") ||
		strings.Join(alice.Databases, ",") != "sales" || len(alice.SecretTables) != 0 {
		t.Errorf("alice: %+v", alice)
	}
	if strings.Join(bob.Tools, ",") != "describe_table,list_databases,list_tables,run_query,sample_rows,search_schema" || bob.RunQuery.IsError ||
		strings.Join(bob.Databases, ",") != "sales,secret,system" || strings.Join(bob.SecretTables, ",") != "keys" {
		t.Errorf("bob: %+v", bob)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("clickgate logged errors:\n%s", logs)
	}
}

// 'clickgate mcp' over stdio applies mcp.policy to the person of
// CLICKGATE_TOKEN.
func TestPolicyOverStdio(t *testing.T) {
	ch := policyClickHouse(t)
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	cfg := policyConfig(t, dir, testkit.FreeAddr(t), key, ch)
	cmd := exec.Command(testkit.Clickgate, "mcp", "--config", cfg)
	cmd.Env = append(os.Environ(), "CLICKGATE_TOKEN="+key.Sign(t, testkit.Claims(issuer, "clickhouse", "alice@example.com", "ch-analysts")))
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "stdio-policy", Version: "1"}, nil).Connect(context.Background(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	if got := strings.Join(names, ","); got != "describe_table,list_databases,list_tables" {
		t.Errorf("tools over stdio: %s", got)
	}
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "list_tables", Arguments: map[string]any{"database": "secret"}})
	if err != nil || !res.IsError || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, "mcp.policy[0]") {
		t.Errorf("list_tables secret over stdio: %v %+v", err, res)
	}
	res, err = cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "list_databases"})
	if err != nil || res.IsError || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, `["sales"]`) || strings.Contains(res.Content[0].(*mcp.TextContent).Text, "secret") {
		t.Errorf("list_databases over stdio: %v %+v", err, res)
	}
	comp, err := cs.Complete(context.Background(), &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "explore_database"},
		Argument: mcp.CompleteParamsArgument{Name: "database", Value: ""}})
	if err != nil || strings.Join(comp.Completion.Values, ",") != "default,sales" {
		t.Errorf("completions over stdio: %v %+v", err, comp)
	}
}
