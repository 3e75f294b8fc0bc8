package httpauth

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// connect opens an MCP session at g's /mcp for user with the official Go
// SDK client and a token whose audience is the MCP resource.
func connect(t *testing.T, g *gate, user string) *mcp.ClientSession {
	t.Helper()
	resource := g.URL + "/mcp"
	tok := token(t, g.key, resource, user)
	client := mcp.NewClient(&mcp.Implementation{Name: "httpauth-test", Version: "1"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: resource, HTTPClient: &http.Client{Transport: bearer{tok, http.DefaultTransport}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// runQuery calls run_query and returns its rows as tab-separated lines,
// or the tool's error text.
func runQuery(t *testing.T, cs *mcp.ClientSession, sql string) (rows string, isError bool) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_query", Arguments: map[string]any{"query": sql}})
	if err != nil {
		t.Fatalf("run_query: %v", err)
	}
	if res.IsError {
		var b strings.Builder
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				b.WriteString(tc.Text)
			}
		}
		return b.String(), true
	}
	var r struct {
		Rows [][]any `json:"rows"`
	}
	raw, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, row := range r.Rows {
		var cells []string
		for _, c := range row {
			s, _ := json.Marshal(c)
			cells = append(cells, strings.Trim(string(s), `"`))
		}
		lines = append(lines, strings.Join(cells, "\t"))
	}
	return strings.Join(lines, "\n"), false
}

// MCP tools in http_auth mode run as the person's own ClickHouse user,
// checked by ClickHouse through /clickhouse/auth with a ticket, and always
// with readonly (mcp.read_only) whatever the user's profile allows.
func TestMCPToolsRunAsThePerson(t *testing.T) {
	f := newFront(t)
	ch := startClickHouse(t, []authServer{{name: "clickgate", uri: authURI(f)}}, carol, dave)
	g := newGate(t, f, newKey(t), ch.HTTPURL, gateOptions{})

	cases := []struct {
		name, person, sql string
		want              string // rows, or a part of the tool's error
		wantError         bool
	}{
		{"carol reads as carol", "carol", "SELECT currentUser(), getSetting('readonly') /* mcp_case */", "carol\t1", false},
		{"dave reads as dave, readonly", "dave", "SELECT currentUser(), getSetting('readonly') /* mcp_case */", "dave\t1", false},
		{"dave cannot write", "dave", "CREATE TABLE default.by_dave_mcp (x UInt8) ENGINE = Memory /* mcp_case */", "Code: 164", true},
		{"erin has no ClickHouse user", "erin", "SELECT currentUser() /* mcp_case */", "erin: Authentication failed", true},
	}
	sessions := map[string]*mcp.ClientSession{}
	for _, p := range []string{"carol", "dave", "erin"} {
		sessions[p] = connect(t, g, p) // MCP sessions open without asking ClickHouse
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cs := sessions[c.person]
			f.take()
			got, isErr := runQuery(t, cs, c.sql)
			if isErr != c.wantError || (!c.wantError && got != c.want) || (c.wantError && !strings.Contains(got, c.want)) {
				t.Fatalf("run_query: error %v, %q; want error %v, %q", isErr, got, c.wantError, c.want)
			}
			calls := f.take()
			if c.person == "erin" {
				if len(calls) != 0 {
					t.Errorf("ClickHouse asked /clickhouse/auth about a user it does not have: %+v", calls)
				}
				return
			}
			if len(calls) == 0 {
				t.Fatal("ClickHouse never asked /clickhouse/auth")
			}
			for _, call := range calls {
				if call.user != c.person || call.status != 200 || ticketUser(t, call.password) != c.person {
					t.Errorf("call to /clickhouse/auth: %+v, want %s with a ticket", call, c.person)
				}
			}
		})
	}
	if adminQuery(t, ch, "EXISTS TABLE default.by_dave_mcp") != "0" {
		t.Error("dave wrote through a read-only MCP tool")
	}
	flushLogs(t, ch)
	if got := adminQuery(t, ch, "SELECT user, exception_code FROM system.query_log WHERE query LIKE '%mcp\\_case%' AND query NOT LIKE '%query_log%' AND type != 'QueryStart' ORDER BY event_time_microseconds"); got != "carol\t0\ndave\t0\ndave\t164" {
		t.Errorf("query_log:\n%s", got)
	}
}
