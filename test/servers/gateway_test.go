package servers

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// What ClickHouse's HTTP interface offers its clients passes through the
// gateway unchanged, on both releases: whatever the release sends (26.7
// much more than 18.16) reaches the client, and nothing clickgate adds to
// the request (the namespace of query and session ids) leaks back.
func testGatewayPassThrough(t *testing.T, e *env) {
	t.Run("X-ClickHouse-Summary", func(t *testing.T) { testSummary(t, e) })
	t.Run("progress headers while the query runs", func(t *testing.T) { testProgress(t, e) })
	t.Run("X-ClickHouse-Query-Id", func(t *testing.T) { testQueryID(t, e) })
	t.Run("X-ClickHouse-Format", func(t *testing.T) { testFormat(t, e) })
	t.Run("compression", func(t *testing.T) { testCompression(t, e) })
	t.Run("sessions", func(t *testing.T) { testSessions(t, e) })
}

// 26.7 sends X-ClickHouse-Summary (read, written and result rows) with
// the response headers — complete for a SELECT only when it waits for the
// end of the query (wait_end_of_query=1) before answering; 18.16 sends no
// such header.
func testSummary(t *testing.T, e *env) {
	table := marker()
	e.admin(t, "CREATE TABLE default."+table+" (x UInt64) ENGINE = Memory")
	tok := e.token(t, alice)
	for _, tc := range []struct {
		name   string
		params url.Values
		sql    string
		want   map[string]string // fields of the summary on 26.7
	}{
		{"SELECT", url.Values{"wait_end_of_query": {"1"}}, "SELECT number FROM numbers(10)", map[string]string{"read_rows": "10", "result_rows": "10", "written_rows": "0"}},
		{"INSERT", nil, "INSERT INTO default." + table + " SELECT number FROM numbers(7)", map[string]string{"written_rows": "7"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.service.send(t, tok, request{params: tc.params, body: tc.sql})
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			h := r.header.Values("X-Clickhouse-Summary")
			if !modern(e.release) {
				if len(h) != 0 {
					t.Fatalf("18.16 sent a summary: %q", h)
				}
				return
			}
			if len(h) != 1 {
				t.Fatalf("summary headers %q, want one", h)
			}
			var summary map[string]string
			if err := json.Unmarshal([]byte(h[0]), &summary); err != nil {
				t.Fatalf("summary %q: %v", h[0], err)
			}
			for k, v := range tc.want {
				if summary[k] != v {
					t.Errorf("summary %s = %q, want %q (%s)", k, summary[k], v, h[0])
				}
			}
		})
	}
	if got := e.admin(t, "SELECT count() FROM default."+table); got != "7" {
		t.Errorf("the INSERT wrote %s rows", got)
	}
}

// With send_progress_in_http_headers=1, 26.7 sends X-ClickHouse-Progress
// headers while it works; the gateway must not hold the response back.
// The query never ends by itself (an endless table) and each row is
// larger than ClickHouse's 1 MiB response buffer, so the headers leave
// ClickHouse with the first row, while it still runs; the test reads them
// before any body, checks that ClickHouse is still running the query,
// closes the response and checks that ClickHouse stops. 18.16 (Debian's
// build) accepts the setting but never sends progress headers: there,
// the headers must still arrive while the query runs.
func testProgress(t *testing.T, e *env) {
	m := marker()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := e.service.open(t, ctx, e.token(t, alice), request{
		params: url.Values{"send_progress_in_http_headers": {"1"}, "http_headers_progress_interval_ms": {"1"}},
		body:   "SELECT toString(range(200000)) AS wide, sleepEachRow(0.2), '" + m + "' FROM system.numbers SETTINGS max_block_size = 1",
	})
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	if n := e.running(t, m); n != "1" {
		t.Fatalf("the headers came, but ClickHouse runs %s such queries, want 1", n)
	}
	progress := resp.Header.Values("X-Clickhouse-Progress")
	if modern(e.release) {
		if len(progress) == 0 {
			t.Fatalf("26.7: no X-ClickHouse-Progress in the headers %v", resp.Header)
		}
		for _, p := range progress {
			var v map[string]string
			if err := json.Unmarshal([]byte(p), &v); err != nil || v["read_rows"] == "" {
				t.Errorf("progress header %q: %v", p, err)
			}
		}
	} else if len(progress) != 0 {
		t.Fatalf("18.16 sent progress headers: %q", progress)
	}
	// The first row streams through as well.
	first := make([]byte, 64)
	if _, err := io.ReadFull(resp.Body, first); err != nil || !bytes.HasPrefix(first, []byte("[0,1,2,")) {
		t.Fatalf("first bytes %q: %v", first, err)
	}
	cancel()
	resp.Body.Close()
	e.waitGone(t, m)
}

// clickgate puts query ids in the person's namespace; the client sees its
// own id back. 26.7 echoes the id in X-ClickHouse-Query-Id (clickgate
// takes the namespace off), 18.16 sends no such header. What ClickHouse
// ran under: the person's prefix, then the client's id.
func testQueryID(t *testing.T, e *env) {
	shared := "report-" + marker()
	prefixes := map[string]string{} // person → namespace ClickHouse saw
	for _, tc := range []struct {
		name string
		p    person
		id   string // "" = none sent: clickgate makes one
	}{
		{"alice's own id", alice, shared},
		{"bob, the same id", bob, shared},
		{"alice, no id", alice, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := marker()
			params := url.Values{}
			if tc.id != "" {
				params.Set("query_id", tc.id)
			}
			r := e.service.send(t, e.token(t, tc.p), request{params: params, body: "SELECT '" + m + "'"})
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			echoed := r.header.Values("X-Clickhouse-Query-Id")
			logged := e.logged(t, m, "query_id")
			if len(logged) != 1 {
				t.Fatalf("query_log: %q", logged)
			}
			prefix, ran, ok := strings.Cut(logged[0], "_")
			if !ok || !strings.HasPrefix(prefix, "cg") {
				t.Fatalf("ClickHouse ran it as %q, want it in the person's namespace cg…_", logged[0])
			}
			switch {
			case !modern(e.release):
				if len(echoed) != 0 {
					t.Fatalf("18.16 echoed %q", echoed)
				}
			case tc.id != "":
				if !slices.Equal(echoed, []string{tc.id}) {
					t.Fatalf("echoed %q, want the client's own %q", echoed, tc.id)
				}
			default:
				if !slices.Equal(echoed, []string{ran}) {
					t.Fatalf("echoed %q for a query ClickHouse ran as %q: want the id without the namespace", echoed, logged[0])
				}
			}
			if tc.id != "" && ran != tc.id {
				t.Fatalf("ClickHouse ran it as %q, want %s_%s", logged[0], prefix, tc.id)
			}
			if old, seen := prefixes[tc.p.email]; seen && old != prefix {
				t.Errorf("%s's namespace changed: %s, then %s", tc.p.email, old, prefix)
			}
			prefixes[tc.p.email] = prefix
		})
	}
	if prefixes[alice.email] == prefixes[bob.email] {
		t.Errorf("alice and bob share the namespace %s", prefixes[alice.email])
	}
}

// X-ClickHouse-Format: 26.7 takes the request header as the output format
// and names the format it used in the response header; 18.16 ignores the
// request header (TabSeparated) and sends none. The URL parameter
// default_format and a FORMAT clause work on both.
func testFormat(t *testing.T, e *env) {
	tok := e.token(t, alice)
	const sql = "SELECT 1 AS x, 'y' AS s"
	for _, tc := range []struct {
		name           string
		r              request
		body18, body26 string
		header26       string // the response's X-ClickHouse-Format on 26.7
	}{
		{"none", request{body: sql}, "1\ty\n", "1\ty\n", "TSV"},
		{"request header", request{header: http.Header{"X-Clickhouse-Format": {"JSONEachRow"}}, body: sql},
			"1\ty\n", `{"x":1,"s":"y"}` + "\n", "JSONEachRow"},
		{"default_format", request{params: url.Values{"default_format": {"CSV"}}, body: sql}, "1,\"y\"\n", "1,\"y\"\n", "CSV"},
		{"FORMAT clause", request{body: sql + " FORMAT TSVWithNames"}, "x\ts\n1\ty\n", "x\ts\n1\ty\n", "TSVWithNames"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.service.send(t, tok, tc.r)
			want, wantHeader := tc.body18, []string(nil)
			if modern(e.release) {
				want, wantHeader = tc.body26, []string{tc.header26}
			}
			if r.status != http.StatusOK || r.body != want {
				t.Errorf("%d %q, want %q", r.status, r.body, want)
			}
			if got := r.header.Values("X-Clickhouse-Format"); !slices.Equal(got, wantHeader) {
				t.Errorf("X-ClickHouse-Format %q, want %q", got, wantHeader)
			}
		})
	}
}

// Compression of the answer is ClickHouse's, end to end: clickgate neither
// decodes nor drops Content-Encoding. 18.16 compresses (gzip, deflate)
// only with enable_http_compression=1; 26.7 compresses by default (the
// setting's default is 1 in current releases) and knows br, zstd and more,
// which 18.16 answers uncompressed.
func testCompression(t *testing.T, e *env) {
	tok := e.token(t, alice)
	const sql = "SELECT number FROM numbers(1000)"
	var plain strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&plain, "%d\n", i)
	}
	for _, tc := range []struct {
		name           string
		enable         string // enable_http_compression, "" = not sent
		accept         string
		want18, want26 string // Content-Encoding
	}{
		{"gzip", "1", "gzip", "gzip", "gzip"},
		{"deflate", "1", "deflate", "deflate", "deflate"},
		{"br", "1", "br", "", "br"},
		{"zstd", "1", "zstd", "", "zstd"},
		{"asked without the setting", "", "gzip", "", "gzip"},
		{"setting off", "0", "gzip", "", ""},
		{"not accepted", "1", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request{body: sql, params: url.Values{}, header: http.Header{}}
			if tc.enable != "" {
				r.params.Set("enable_http_compression", tc.enable)
			}
			if tc.accept != "" {
				r.header.Set("Accept-Encoding", tc.accept)
			}
			resp := e.service.send(t, tok, r)
			want := tc.want18
			if modern(e.release) {
				want = tc.want26
			}
			if resp.status != http.StatusOK || resp.header.Get("Content-Encoding") != want {
				t.Fatalf("%d, Content-Encoding %q, want %q", resp.status, resp.header.Get("Content-Encoding"), want)
			}
			body, err := decode(want, resp.body)
			if err != nil {
				t.Fatalf("decoding %s: %v", want, err)
			}
			switch {
			case body == nil: // an encoding the standard library does not read
				if resp.body == plain.String() {
					t.Errorf("Content-Encoding %s, but the body is plain", want)
				}
			case string(body) != plain.String():
				t.Errorf("the decoded body is %d bytes, want the %d of the result", len(body), plain.Len())
			}
		})
	}
}

// decode returns body decoded as encoding, or nil for encodings the
// standard library does not read.
func decode(encoding, body string) ([]byte, error) {
	var r io.Reader
	var err error
	switch encoding {
	case "":
		return []byte(body), nil
	case "gzip":
		r, err = gzip.NewReader(strings.NewReader(body))
	case "deflate": // ClickHouse's deflate is zlib's format (RFC 1950)
		r, err = zlib.NewReader(strings.NewReader(body))
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// Sessions: session_id is the client's, per person. Two people who send
// the same session_id — sharing one ClickHouse account — each have a
// session of their own, with their own temporary tables. Both modes share
// accounts: service everyone's, mapped each role's (bob and dave both run
// as writer).
func testSessions(t *testing.T, e *env) {
	for _, tc := range []struct {
		f            *front
		owner, other person
	}{
		{e.service, alice, bob},
		{e.mapped, bob, dave},
	} {
		t.Run(tc.f.name, func(t *testing.T) {
			session := "s-" + marker()
			tmp := "tmp_" + marker()
			in := func(p person, sql string) string {
				t.Helper()
				r := tc.f.send(t, e.token(t, p), request{params: url.Values{"session_id": {session}}, body: sql})
				if r.status != http.StatusOK {
					t.Fatalf("%s in the session: %q: %d %s", p.email, sql, r.status, r.body)
				}
				return strings.TrimSuffix(r.body, "\n")
			}
			in(tc.owner, "CREATE TEMPORARY TABLE "+tmp+" (x UInt8)")
			in(tc.owner, "INSERT INTO "+tmp+" VALUES (1), (2)")
			if got := in(tc.owner, "SELECT sum(x) FROM "+tmp); got != "3" {
				t.Fatalf("%s's temporary table: %q", tc.owner.email, got)
			}
			// To ClickHouse the other person's session_id names a session
			// that does not exist (Code 372 with session_check=1).
			r := tc.f.send(t, e.token(t, tc.other), request{params: url.Values{"session_id": {session}, "session_check": {"1"}}, body: "SELECT 1"})
			if r.status == http.StatusOK || !strings.Contains(r.body, "Code: 372") {
				t.Fatalf("%s checks %s's session: %d %s, want ClickHouse's Code: 372 (session not found)", tc.other.email, tc.owner.email, r.status, r.body)
			}
			if r := tc.f.send(t, e.token(t, tc.owner), request{params: url.Values{"session_id": {session}, "session_check": {"1"}}, body: "SELECT 1"}); r.status != http.StatusOK {
				t.Fatalf("%s checks her own session: %d %s", tc.owner.email, r.status, r.body)
			}
			if got := in(tc.other, "EXISTS TEMPORARY TABLE "+tmp); got != "0" {
				t.Fatalf("%s sees %s's temporary table in the same session_id", tc.other.email, tc.owner.email)
			}
			in(tc.other, "CREATE TEMPORARY TABLE "+tmp+" (x UInt8)")
			in(tc.other, "INSERT INTO "+tmp+" VALUES (40)")
			for _, c := range []struct {
				p    person
				want string
			}{{tc.owner, "3"}, {tc.other, "40"}} {
				if got := in(c.p, "SELECT sum(x) FROM "+tmp); got != c.want {
					t.Errorf("%s's sum: %q, want %s", c.p.email, got, c.want)
				}
			}
			// Outside the session the table does not exist.
			if got := tc.f.query(t, e.token(t, tc.owner), "EXISTS TEMPORARY TABLE "+tmp); got != "0" {
				t.Errorf("outside the session: %q", got)
			}
		})
	}
}
