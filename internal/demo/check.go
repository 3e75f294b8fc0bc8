package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Example queries, printed and used by the self-check.
const (
	// SpendSQL needs the finance database: bob's.
	SpendSQL = `SELECT team, round(sum((input_tokens - cached_input_tokens) * input_usd_per_mtok + cached_input_tokens * cached_input_usd_per_mtok + output_tokens * output_usd_per_mtok) / 1000000) AS usd_last_30_days FROM usage.llm_usage ANY LEFT JOIN finance.model_prices USING model WHERE date >= today() - 30 GROUP BY team ORDER BY usd_last_30_days DESC LIMIT 3`
	// TokensSQL reads only usage: anyone's.
	TokensSQL = `SELECT model, sum(input_tokens + output_tokens) AS tokens_last_30_days FROM usage.llm_usage WHERE date >= today() - 30 GROUP BY model ORDER BY tokens_last_30_days DESC LIMIT 3`
)

// check is one self-check: what a person does, and whether ClickHouse
// should allow it.
type check struct {
	via, who, what string
	// refusal is empty when ClickHouse should answer, else the kind of
	// refusal expected.
	refusal refusal
	run     func(ctx context.Context) (string, error)
}

// refusal is a kind of "no" from ClickHouse, recognised by its message.
type refusal []string

var (
	allowed      refusal
	noAccess     = refusal{"Access denied", "Not enough privileges", "ACCESS_DENIED"} // 18.16 (291); SQL grants (497)
	readonlyMode = refusal{"readonly mode", "READONLY"}
)

func (r refusal) matches(msg string) bool {
	for _, s := range r {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Check runs the demo's self-checks as alice and bob, with their tokens,
// through the gateway at base and its MCP endpoint: alice (analyst) reads
// usage but neither finance nor writes; bob (admin) reads both. It prints
// one line per check and returns an error if any went otherwise.
func Check(ctx context.Context, w io.Writer, base, aliceToken, bobToken string) error {
	gw := func(tok string) *Client { return &Client{URL: base, Bearer: tok} }
	sql := func(c *Client, q string) func(context.Context) (string, error) {
		return func(ctx context.Context) (string, error) { return c.Query(ctx, q) }
	}
	alice, err := connectMCP(ctx, base+"/mcp", aliceToken)
	if err != nil {
		return fmt.Errorf("MCP as alice: %w", err)
	}
	defer alice.Close()
	bob, err := connectMCP(ctx, base+"/mcp", bobToken)
	if err != nil {
		return fmt.Errorf("MCP as bob: %w", err)
	}
	defer bob.Close()
	tool := func(cs *mcp.ClientSession, name, query string) func(context.Context) (string, error) {
		return func(ctx context.Context) (string, error) { return callTool(ctx, cs, name, query) }
	}
	checks := []check{
		{"gateway", "alice", "SELECT count() FROM usage.llm_usage", allowed, sql(gw(aliceToken), "SELECT count() FROM "+UsageTable)},
		{"gateway", "alice", "SELECT count() FROM finance.team_budgets", noAccess, sql(gw(aliceToken), "SELECT count() FROM finance.team_budgets")},
		{"gateway", "alice", "INSERT INTO usage.llm_usage …", readonlyMode, sql(gw(aliceToken), "INSERT INTO "+UsageTable+" (date, team) VALUES (today(), 'alice')")},
		{"gateway", "bob", "SELECT count() FROM finance.team_budgets", allowed, sql(gw(bobToken), "SELECT count() FROM finance.team_budgets")},
		{"mcp", "alice", "list_databases", allowed, tool(alice, "list_databases", "")},
		{"mcp", "bob", "list_databases", allowed, tool(bob, "list_databases", "")},
		{"mcp", "alice", "run_query: tokens per model, 30 days", allowed, tool(alice, "run_query", TokensSQL)},
		{"mcp", "alice", "run_query: spend per team (finance)", noAccess, tool(alice, "run_query", SpendSQL)},
		{"mcp", "bob", "run_query: spend per team, 30 days", allowed, tool(bob, "run_query", SpendSQL)},
		{"oauth", "—", "an MCP client finds where to sign in", allowed, func(ctx context.Context) (string, error) { return discoverSignIn(ctx, base) }},
	}
	failed := 0
	for _, c := range checks {
		out, err := c.run(ctx)
		verdict, detail := "ok", ""
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil && c.refusal.matches(err.Error()):
			detail = "refused: " + err.Error()
		case err != nil:
			verdict, detail = "FAIL", "error: "+err.Error()
		case c.refusal != nil:
			verdict, detail = "FAIL", "answered, but should be refused: "+out
		default:
			detail = cell(out)
		}
		if verdict != "ok" {
			failed++
		}
		fmt.Fprintf(w, "  %-4s %-7s %-5s %-42s %s\n", verdict, c.via, c.who, c.what, clip(detail, 90))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d checks failed", failed, len(checks))
	}
	fmt.Fprintf(w, "  All %d checks passed: alice and bob see different data.\n", len(checks))
	return nil
}

// discoverSignIn follows what an MCP client does after its first 401:
// the protected resource metadata names the authorization server (the
// broker), whose metadata offers PKCE and client registration.
func discoverSignIn(ctx context.Context, base string) (string, error) {
	var prm struct {
		AuthorizationServers []string `json:"authorization_servers"`
	}
	if err := getJSON(ctx, base+"/.well-known/oauth-protected-resource/mcp", &prm); err != nil {
		return "", err
	}
	if len(prm.AuthorizationServers) == 0 {
		return "", fmt.Errorf("the MCP metadata names no authorization server")
	}
	var as struct {
		Registration string   `json:"registration_endpoint"`
		PKCE         []string `json:"code_challenge_methods_supported"`
		Documents    bool     `json:"client_id_metadata_document_supported"`
	}
	if err := getJSON(ctx, prm.AuthorizationServers[0]+"/.well-known/oauth-authorization-server", &as); err != nil {
		return "", err
	}
	if as.Registration == "" || !as.Documents || strings.Join(as.PKCE, ",") != "S256" {
		return "", fmt.Errorf("the broker's metadata lacks registration, client metadata documents or PKCE S256")
	}
	return prm.AuthorizationServers[0] + " (PKCE S256, registration, client metadata documents)", nil
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

func connectMCP(ctx context.Context, endpoint, token string) (*mcp.ClientSession, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "clickgate-demo", Version: "1"}, nil)
	return client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: endpoint, HTTPClient: &http.Client{Transport: bearer{token, http.DefaultTransport}},
	}, nil)
}

// callTool calls an MCP tool and renders its rows on one line; a tool
// error comes back as an error.
func callTool(ctx context.Context, cs *mcp.ClientSession, name, query string) (string, error) {
	args := map[string]any{}
	if query != "" {
		args["query"] = query
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return "", err
	}
	if res.IsError {
		var b strings.Builder
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				b.WriteString(tc.Text)
			}
		}
		return "", fmt.Errorf("%s", CleanMessage(b.String()))
	}
	var r struct {
		Rows [][]any `json:"rows"`
	}
	raw, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(raw, &r); err != nil {
		return "", err
	}
	var rows []string
	for _, row := range r.Rows {
		var cells []string
		for _, v := range row {
			cells = append(cells, cell(v))
		}
		rows = append(rows, strings.Join(cells, " "))
	}
	return strings.Join(rows, ", "), nil
}

func cell(v any) string {
	switch x := v.(type) {
	case string:
		if n, err := strconv.ParseInt(x, 10, 64); err == nil {
			return Thousands(n)
		}
		return x
	case float64:
		return Thousands(int64(x))
	default:
		return fmt.Sprint(x)
	}
}

// Thousands formats n with thousands separators: 1,234,567.
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
