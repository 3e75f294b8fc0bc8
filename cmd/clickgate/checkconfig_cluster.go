package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/clickgate/clickgate/internal/config"
)

// describeNodes says which ClickHouse nodes the gateway and MCP use, how
// their health is checked, what is retried and what times out.
func describeNodes(ch *config.ClickHouse) []string {
	var out []string
	if len(ch.URLs) > 1 {
		out = append(out, fmt.Sprintf("%d nodes (replicas of one cluster): %s; each request goes to the node with the fewest requests in flight (round-robin among equals), a session_id to the node that holds its session",
			len(ch.URLs), strings.Join(ch.URLs, ", ")))
		h := ch.Health
		health := fmt.Sprintf("health: GET /ping every %s (timeout %s); a node that fails it gets no requests until it answers again", h.Interval, h.Timeout)
		if h.MaxReplicaDelay > 0 {
			health += fmt.Sprintf("; /replicas_status too: a node whose replicas lag more than %s gets no requests", h.MaxReplicaDelay)
		}
		out = append(out, health)
		out = append(out, fmt.Sprintf("a request whose node fails before any byte of it was written is tried on up to %d other nodes; one that may have run is never repeated", *ch.Retries))
		if ch.Provisioning.CreateUsers || ch.Provisioning.SyncRoles {
			out = append(out, "provisioning creates users and grants roles through one node: keep users in replicated access storage (<user_directories><replicated>) so every node knows them")
		}
	}
	out = append(out, fmt.Sprintf("a node must accept the connection within %s (connect_timeout) and answer with headers within %s (response_timeout: raise it for queries that think longer before their first row); past them the client gets a ClickHouse-style error", ch.ConnectTimeout, ch.ResponseTimeout))
	return out
}

// describeLimits says what each person may run: the default, the roles'
// and people's entries.
func describeLimits(l config.Limits, mcpConcurrent int) []string {
	entry := func(e config.Limit) string {
		var parts []string
		num := func(name string, v *int) {
			if v != nil {
				val := "unlimited"
				if *v > 0 {
					val = fmt.Sprint(*v)
				}
				parts = append(parts, name+" "+val)
			}
		}
		num("max_concurrent_queries", e.MaxConcurrentQueries)
		num("max_queue", e.MaxQueue)
		if e.MaxQueueTime > 0 {
			parts = append(parts, "max_queue_time "+e.MaxQueueTime.String())
		}
		num("requests_per_minute", e.RequestsPerMinute)
		if len(e.Networks) > 0 {
			parts = append(parts, "networks "+strings.Join(e.Networks, ", "))
		}
		if len(parts) == 0 {
			return "nothing set"
		}
		return strings.Join(parts, ", ")
	}
	out := []string{"default: " + entry(l.Default)}
	if l.Default.MaxConcurrentQueries == nil {
		out[0] += fmt.Sprintf(" (MCP tool calls: at most %d at once per person, mcp.max_concurrent_queries)", mcpConcurrent)
	}
	for _, r := range slices.Sorted(maps.Keys(l.Roles)) {
		out = append(out, fmt.Sprintf("role %s: %s", r, entry(l.Roles[r])))
	}
	for _, p := range slices.Sorted(maps.Keys(l.People)) {
		out = append(out, fmt.Sprintf("person %s: %s", p, entry(l.People[p])))
	}
	return append(out, "a person's entry wins over their roles', which win over the default, key by key; with several roles, each key takes the most generous value; beyond a limit: HTTP 429 (Code 202, or 201 for requests_per_minute) with Retry-After, 403 (Code 195) from another network")
}
