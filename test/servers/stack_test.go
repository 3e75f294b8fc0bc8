// Package servers runs clickgate's mapped and service modes against both
// real ClickHouse servers of the test suite — Debian's 18.16 and 26.7 (the
// chDB engine run as a server) — and asserts, per release, what reaches
// ClickHouse and what comes back: the person's identity (quota_key,
// log_comment, the mapped account), the gateway's pass-through of
// ClickHouse's own HTTP features (summary and progress headers, query ids,
// formats, compression, sessions) and the MCP tools. Where the releases
// differ, each test names the expectation for each release and why.
package servers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
)

// releases are the ClickHouse servers every test runs against.
var releases = []chtest.Release{chtest.Debian1816, chtest.ChDB267}

// modern reports whether the release is 26.7, for version-specific
// expectations.
func modern(r chtest.Release) bool { return r == chtest.ChDB267 }

// Accounts of the ClickHouse server. Each profile logs its queries, so
// system.query_log shows what ClickHouse ran for every mode.
const (
	svcUser, svcPassword       = "svc", "svc-pw"       // service mode
	quotaUser, quotaPassword   = "svc_q", "svc-q-pw"   // service mode, 3 queries per person and hour
	readerUser, readerPassword = "reader", "reader-pw" // mapped: analysts (readonly = 1)
	writerUser, writerPassword = "writer", "writer-pw" // mapped: admin
	stockUser, stockPassword   = "svc_s", "svc-s-pw"   // service mode on the stock quota (no client keys)
)

// personQuota is the number of queries the svc_q account allows each
// quota key per hour.
const personQuota = 3

// The fronts' MCP limits.
const (
	maxResultRows  = 40
	maxResultBytes = 4096
)

// env is one ClickHouse server with clickgate fronts in each mode.
type env struct {
	release chtest.Release
	ch      *chtest.Server
	iss     servertest.Issuer
	service *front // service mode as svc
	mapped  *front // mapped mode: admin → writer, analysts → reader
	quota   *front // service mode as svc_q
	stock   *front // service mode as svc_s, without quota_key
}

// front is one clickgate in front of the server.
type front struct {
	name     string
	url      string // base URL: the gateway is at /, MCP at /mcp
	resource string // the MCP resource: url + /mcp
}

// TestServers is the matrix: each feature against each release. The
// releases run in parallel, each on its own server with its own fronts,
// which the features share (each uses its own markers, tables and
// sessions): stopping 18.16 waits five seconds for the fronts' idle
// keep-alive connections, once per release rather than once per feature.
func TestServers(t *testing.T) {
	for _, r := range releases {
		t.Run(r.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, r)
			t.Run("service identity", func(t *testing.T) { testServiceIdentity(t, e) })
			t.Run("service quota per person", func(t *testing.T) { testServiceQuotaPerPerson(t, e) })
			t.Run("service on the stock quota", func(t *testing.T) { testServiceStockQuota(t, e) })
			t.Run("mapped accounts", func(t *testing.T) { testMappedAccounts(t, e) })
			t.Run("gateway pass-through", func(t *testing.T) { testGatewayPassThrough(t, e) })
			t.Run("MCP tools", func(t *testing.T) { testMCPTools(t, e) })
		})
	}
}

func newEnv(t *testing.T, r chtest.Release) *env {
	t.Helper()
	ch := chtest.Start(t, chtest.Options{
		Release:     r,
		ExtraConfig: chtest.QueryLogConfig,
		ExtraProfiles: `<logged><log_queries>1</log_queries></logged>
    <logged_ro><log_queries>1</log_queries><readonly>1</readonly></logged_ro>`,
		ExtraQuotas: fmt.Sprintf(`<per_person><keyed>1</keyed><interval><duration>3600</duration><queries>%d</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></per_person>`, personQuota),
		ExtraUsers: []chtest.User{
			{Name: svcUser, Password: svcPassword, Profile: "logged", Quota: chtest.KeyedQuota},
			{Name: quotaUser, Password: quotaPassword, Profile: "logged", Quota: "per_person"},
			{Name: readerUser, Password: readerPassword, Profile: "logged_ro"},
			{Name: writerUser, Password: writerPassword, Profile: "logged"},
			{Name: stockUser, Password: stockPassword, Profile: "logged"},
		},
	})
	e := &env{release: r, ch: ch, iss: servertest.NewIssuer(t)}
	e.service = e.newFront(t, "service", fmt.Sprintf("{url: %s, mode: service, user: %s, password: %s, quota_key: true}", ch.HTTPURL, svcUser, svcPassword))
	e.quota = e.newFront(t, "service (quota)", fmt.Sprintf("{url: %s, mode: service, user: %s, password: %s, quota_key: true}", ch.HTTPURL, quotaUser, quotaPassword))
	e.stock = e.newFront(t, "service (stock quota)", fmt.Sprintf("{url: %s, mode: service, user: %s, password: %s}", ch.HTTPURL, stockUser, stockPassword))
	e.mapped = e.newFront(t, "mapped", fmt.Sprintf(`
  url: %s
  mode: mapped
  accounts:
    - {role: admin, user: %s, password: %s}
    - {role: analysts, user: %s, password: %s}`, ch.HTTPURL, writerUser, writerPassword, readerUser, readerPassword))
	return e
}

// newFront starts a clickgate with the given clickhouse section. People's
// roles are their groups that start with "ch-", without it, '-' as '_'.
func (e *env) newFront(t *testing.T, name, clickhouseYAML string) *front {
	t.Helper()
	// MCP's resource is public_url + /mcp.
	cg := servertest.StartWithURL(t, func(publicURL string) string {
		return fmt.Sprintf(`
server: {public_url: %s}
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//; s/-/_/g"}
clickhouse: %s
mcp: {max_result_rows: %d, max_result_bytes: %d}
`, publicURL, e.iss.Processor(), clickhouseYAML, maxResultRows, maxResultBytes)
	}, server.Options{})
	return &front{name: name, url: cg.URL, resource: cg.URL + "/mcp"}
}

// person is someone with a token.
type person struct {
	email  string
	groups []string
}

var (
	alice = person{"alice@example.com", []string{"ch-analysts", "ch-data-eng"}} // roles analysts, data_eng
	bob   = person{"bob@example.com", []string{"ch-admin"}}                     // role admin
	dave  = person{"dave@example.com", []string{"ch-analysts", "ch-admin"}}     // roles analysts, admin
	carol = person{"carol@example.com", []string{"ch-guests", "staff"}}         // role guests
	erin  = person{"erin@example.com", nil}                                     // no roles
)

// token is p's token for the gateway (audience clickhouse).
func (e *env) token(t *testing.T, p person) string {
	return e.iss.Token(t, "clickhouse", p.email, p.groups...)
}

// mcpToken is p's token for f's MCP resource.
func (e *env) mcpToken(t *testing.T, f *front, p person) string {
	return e.iss.Token(t, f.resource, p.email, p.groups...)
}

// rawClient leaves compression alone: the test sees the Content-Encoding
// that came through clickgate and decodes the body itself.
var rawClient = &http.Client{Transport: &http.Transport{DisableCompression: true}}

// request is one gateway request.
type request struct {
	params url.Values
	header http.Header
	body   string
}

// response is a gateway answer, read whole.
type response struct {
	status int
	header http.Header
	body   string
}

// send sends r to f's gateway as tok.
func (f *front) send(t *testing.T, tok string, r request) response {
	t.Helper()
	resp := f.open(t, context.Background(), tok, r)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

// open sends r and returns the answer as soon as its headers arrived.
func (f *front) open(t *testing.T, ctx context.Context, tok string, r request) *http.Response {
	t.Helper()
	u := f.url + "/"
	if len(r.params) > 0 {
		u += "?" + r.params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// query sends sql and fails the test unless it answers 200.
func (f *front) query(t *testing.T, tok, sql string) string {
	t.Helper()
	r := f.send(t, tok, request{body: sql})
	if r.status != http.StatusOK {
		t.Fatalf("%s: %q: %d %s", f.name, sql, r.status, r.body)
	}
	return strings.TrimSuffix(r.body, "\n")
}

// marker is unique text for finding a query in ClickHouse's tables. Put
// it in a string literal: 18.16 drops trailing comments from what it logs.
func marker() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "srv_" + hex.EncodeToString(b[:])
}

// admin runs sql straight on ClickHouse as its admin.
func (e *env) admin(t *testing.T, sql string) string {
	t.Helper()
	return e.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, sql)
}

// logged returns columns of the finished queries that ClickHouse logged
// whose text contains m, one row per query in the order they started.
//
// SYSTEM FLUSH LOGS alone does not make that reliable: 18.16's flush
// writes only what its log thread has already taken from its queue, and
// 26.7 may log a query's end after its client has read the whole answer.
// So logged first runs a sentinel query of its own, which the queue
// holds after the start of every query containing m, and waits until the
// sentinel is visible and every query containing m that started has
// ended.
func (e *env) logged(t *testing.T, m, columns string) []string {
	t.Helper()
	start, finish := "type = 1", "type = 2" // 18.16: a UInt8
	if modern(e.release) {
		start, finish = "type = 'QueryStart'", "type = 'QueryFinish'"
	}
	sentinel := marker()
	e.ch.Query(t, svcUser, svcPassword, "SELECT '"+sentinel+"'")
	where := func(m string) string {
		return " FROM system.query_log WHERE query LIKE '%" + m + "%' AND query NOT LIKE '%query_log%'"
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		e.admin(t, "SYSTEM FLUSH LOGS")
		// Before its first flush 18.16 has no query_log table.
		seen, err := e.ch.QueryErr(chtest.AdminUser, chtest.AdminPassword, "SELECT countIf("+finish+")"+where(sentinel))
		if err == nil && seen == "1" && e.admin(t, "SELECT countIf(NOT "+start+") >= countIf("+start+")"+where(m)) == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ClickHouse's query_log did not settle for %s (sentinel %s: %q %v)", m, sentinel, seen, err)
		}
	}
	out := e.admin(t, "SELECT "+columns+where(m)+" AND "+finish+" ORDER BY event_time, query_start_time")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// queryLogHas reports whether system.query_log has the column.
func (e *env) queryLogHas(t *testing.T, column string) bool {
	t.Helper()
	e.admin(t, "SYSTEM FLUSH LOGS")
	return e.admin(t, "SELECT count() FROM system.columns WHERE database = 'system' AND table = 'query_log' AND name = '"+column+"'") == "1"
}

// running returns how many queries containing m ClickHouse is running.
func (e *env) running(t *testing.T, m string) string {
	t.Helper()
	return e.admin(t, "SELECT count() FROM system.processes WHERE query LIKE '%"+m+"%' AND query NOT LIKE '%system.processes%'")
}

// waitGone waits until ClickHouse no longer runs a query containing m.
func (e *env) waitGone(t *testing.T, m string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); e.running(t, m) != "0"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("ClickHouse still runs the query %s", m)
		}
	}
}

type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// connect opens an MCP session to f as p with the official Go SDK client.
func (e *env) connect(t *testing.T, f *front, p person) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "servers-test", Version: "1"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: f.resource, HTTPClient: &http.Client{Transport: bearerTransport{e.mcpToken(t, f, p), http.DefaultTransport}},
	}, nil)
	if err != nil {
		t.Fatalf("%s: MCP connect: %v", f.name, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// toolResult is a tool's answer: its text and structured content.
type toolResult struct {
	isError    bool
	text       string
	structured map[string]any
}

func call(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) toolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	out := toolResult{isError: res.IsError}
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			out.text += tc.Text
		}
	}
	if res.StructuredContent != nil {
		b, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(b, &out.structured); err != nil {
			t.Fatalf("%s: structured content: %v", name, err)
		}
	}
	return out
}

// columnNames returns the names of a structured result's columns.
func columnNames(t *testing.T, result any) []string {
	t.Helper()
	m, ok := result.(map[string]any)
	if !ok {
		t.Fatalf("not a result: %v", result)
	}
	var names []string
	for _, c := range m["columns"].([]any) {
		names = append(names, c.(map[string]any)["name"].(string))
	}
	return names
}

// rows returns a structured result's rows as text, cells joined by tabs.
func rows(result any) []string {
	m, _ := result.(map[string]any)
	rs, _ := m["rows"].([]any)
	out := []string{}
	for _, r := range rs {
		var cells []string
		for _, c := range r.([]any) {
			cells = append(cells, fmt.Sprint(c))
		}
		out = append(out, strings.Join(cells, "\t"))
	}
	return out
}

// column returns the named column of a structured result's rows.
func column(t *testing.T, result any, name string) []string {
	t.Helper()
	i := slices.Index(columnNames(t, result), name)
	if i < 0 {
		t.Fatalf("no column %s in %v", name, columnNames(t, result))
	}
	var out []string
	for _, r := range rows(result) {
		out = append(out, strings.Split(r, "\t")[i])
	}
	return out
}
