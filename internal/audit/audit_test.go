package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// lines decodes JSON lines into generic maps, failing on a partial line.
func lines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("the log does not end in a newline: %q", b)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a whole JSON line: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func keys(m map[string]any) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}

func TestRecordFields(t *testing.T) {
	// A clock east of UTC with microseconds and a stray nanosecond: the
	// record carries UTC, to the microsecond.
	at := time.Date(2026, 3, 4, 7, 8, 9, 123456789, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		name string
		in   Record
		want map[string]any
	}{
		{
			name: "failure with every field",
			in: Record{
				Type: LoginFailure, User: "alice@example.com", Subject: "sub-1", Processor: "corp",
				Roles: []string{"admin", "reader"}, ClientAddress: "192.0.2.7", ClientPort: 40123,
				Interface: InterfaceAuthEndpoint, HTTPUserAgent: "ClickHouse", FailureReason: "token: corp: token expired at …",
				// Callers cannot choose these: Write stamps them.
				EventID: "chosen-by-caller", EventTimeMicroseconds: "yesterday",
			},
			want: map[string]any{
				"type": "LoginFailure", "user": "alice@example.com", "subject": "sub-1", "processor": "corp",
				"roles": []any{"admin", "reader"}, "client_address": "192.0.2.7", "client_port": float64(40123),
				"interface": "auth_endpoint", "http_user_agent": "ClickHouse", "failure_reason": "token: corp: token expired at …",
				"event_time_microseconds": "2026-03-04T06:08:09.123456Z",
			},
		},
		{
			// subject, processor and failure_reason are left out when
			// empty; roles is always a list; the rest always present.
			name: "success with the least",
			in:   Record{Type: LoginSuccess},
			want: map[string]any{
				"type": "LoginSuccess", "user": "", "roles": []any{}, "client_address": "", "client_port": float64(0),
				"interface": "", "http_user_agent": "", "event_time_microseconds": "2026-03-04T06:08:09.123456Z",
			},
		},
		{
			name: "hostile values stay on one line",
			in:   Record{Type: LoginFailure, User: "a\nb\"c", HTTPUserAgent: "x\r\n{\"type\":\"LoginSuccess\"}", FailureReason: "\u2028\x00"},
			want: map[string]any{
				"type": "LoginFailure", "user": "a\nb\"c", "roles": []any{}, "client_address": "", "client_port": float64(0),
				"interface": "", "http_user_agent": "x\r\n{\"type\":\"LoginSuccess\"}", "failure_reason": "\u2028\x00",
				"event_time_microseconds": "2026-03-04T06:08:09.123456Z",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := New(&buf)
			l.now = func() time.Time { return at }
			l.Write(tc.in)
			if n := strings.Count(buf.String(), "\n"); n != 1 {
				t.Fatalf("%d lines: %q", n, buf.String())
			}
			got := lines(t, buf.Bytes())[0]
			id, _ := got["event_id"].(string)
			if !uuidV4.MatchString(id) {
				t.Errorf("event_id %q is not a version 4 UUID", id)
			}
			delete(got, "event_id")
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(tc.want)
			if !bytes.Equal(gb, wb) {
				t.Errorf("record\n got %s\nwant %s", gb, wb)
			}
		})
	}
}

func TestEventTimeMicroseconds(t *testing.T) {
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "2026-01-02T03:04:05.000000Z"},
		{time.Date(2026, 1, 2, 3, 4, 5, 999999999, time.UTC), "2026-01-02T03:04:05.999999Z"},
		{time.Date(2026, 1, 1, 0, 30, 0, 1000, time.FixedZone("", 3600)), "2025-12-31T23:30:00.000001Z"},
		{time.Date(2026, 6, 1, 12, 0, 0, 0, time.FixedZone("PDT", -7*3600)), "2026-06-01T19:00:00.000000Z"},
	} {
		var buf bytes.Buffer
		l := New(&buf)
		l.now = func() time.Time { return tc.at }
		l.Write(Record{Type: LoginSuccess})
		if got := lines(t, buf.Bytes())[0]["event_time_microseconds"]; got != tc.want {
			t.Errorf("%v: event_time_microseconds %v, want %s", tc.at, got, tc.want)
		}
		if _, err := time.Parse(time.RFC3339Nano, tc.want); err != nil {
			t.Errorf("%s is not RFC 3339: %v", tc.want, err)
		}
	}
	// The real clock: now, to the microsecond.
	var buf bytes.Buffer
	before := time.Now().Truncate(time.Microsecond)
	New(&buf).Write(Record{})
	after := time.Now()
	got, err := time.Parse(time.RFC3339Nano, lines(t, buf.Bytes())[0]["event_time_microseconds"].(string))
	if err != nil || got.Before(before) || got.After(after) {
		t.Errorf("event time %v (%v), want between %v and %v", got, err, before, after)
	}
}

func TestEventIDUnique(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	const n = 5000
	for i := 0; i < n; i++ {
		l.Write(Record{Type: LoginSuccess})
	}
	seen := map[string]bool{}
	for _, m := range lines(t, buf.Bytes()) {
		id := m["event_id"].(string)
		if !uuidV4.MatchString(id) || seen[id] {
			t.Fatalf("event_id %q malformed or repeated", id)
		}
		seen[id] = true
	}
	if len(seen) != n {
		t.Fatalf("%d records, want %d", len(seen), n)
	}
}

func TestOpenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Write(Record{Type: LoginSuccess, User: "alice"})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening appends; it never truncates.
	l, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Write(Record{Type: LoginFailure, User: "bob"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs := lines(t, b)
	if len(recs) != 2 || recs[0]["user"] != "alice" || recs[1]["user"] != "bob" {
		t.Fatalf("after reopening: %s", b)
	}
	// A write after Close is lost, not a panic: authentication goes on.
	l.Write(Record{Type: LoginSuccess})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{
		filepath.Join(dir, "missing", "session.log"), // no such directory
		dir, // a directory
	} {
		l, err := Open(path)
		if err == nil || l != nil || !strings.HasPrefix(err.Error(), "audit.file: ") {
			t.Errorf("Open(%q) = %v, %v; want an error naming audit.file", path, l, err)
		}
	}
}

// "" turns the log off: a nil *Log that accepts and discards everything.
func TestOpenOff(t *testing.T) {
	l, err := Open("")
	if err != nil || l != nil {
		t.Fatalf("Open(\"\") = %v, %v", l, err)
	}
	l.Write(Record{Type: LoginSuccess})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// "-" writes to standard error, which Close leaves open.
func TestOpenStderr(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	l, err := Open("-")
	os.Stderr = saved
	if err != nil {
		t.Fatal(err)
	}
	l.Write(Record{Type: LoginFailure, User: "alice", FailureReason: "expired"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Write(Record{Type: LoginSuccess, User: "bob"}) // still open
	w.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	recs := lines(t, b)
	if len(recs) != 2 || recs[0]["user"] != "alice" || recs[0]["failure_reason"] != "expired" || recs[1]["user"] != "bob" {
		t.Fatalf("stderr got %q", b)
	}
}

// A full disk loses records but never stops or fails authentication.
func TestWriteFailureIsIgnored(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full here")
	}
	l, err := Open("/dev/full")
	if err != nil {
		t.Skipf("cannot open /dev/full: %v", err)
	}
	defer l.Close()
	for i := 0; i < 3; i++ {
		l.Write(Record{Type: LoginSuccess})
	}
	l2 := New(failingWriter{})
	l2.Write(Record{Type: LoginSuccess})
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// Concurrent writers (every request writes one record) produce whole
// lines; run with -race.
func TestConcurrentWritesAreWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 16, 200
	long := strings.Repeat("x", 5<<10) // longer than a pipe's atomic write (4 KiB)
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				l.Write(Record{Type: LoginFailure, User: "u", Roles: []string{"r"}, ClientPort: g, FailureReason: long})
			}
		}(g)
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs := lines(t, b)
	if len(recs) != writers*each {
		t.Fatalf("%d records, want %d", len(recs), writers*each)
	}
	perWriter := map[float64]int{}
	ids := map[string]bool{}
	for _, m := range recs {
		if m["failure_reason"] != long || m["type"] != LoginFailure {
			t.Fatalf("mangled record: %.200v", m)
		}
		perWriter[m["client_port"].(float64)]++
		ids[m["event_id"].(string)] = true
	}
	for g := 0; g < writers; g++ {
		if perWriter[float64(g)] != each {
			t.Errorf("writer %d: %d records, want %d", g, perWriter[float64(g)], each)
		}
	}
	if len(ids) != writers*each {
		t.Errorf("%d distinct event_ids, want %d", len(ids), writers*each)
	}
}

// The record's JSON names are the table's columns (system.session_log's
// and system.query_log's where they have them); the optional fields are
// left out when empty.
func TestRecordJSONNames(t *testing.T) {
	for _, tc := range []struct {
		in   Record
		want []string
	}{
		{Record{Type: LoginFailure, Subject: "s", Processor: "p", FailureReason: "f"}, []string{"client_address", "client_port",
			"event_id", "event_time_microseconds", "failure_reason", "http_user_agent", "interface", "processor", "roles", "subject", "type", "user"}},
		{Record{Type: Query}, []string{"client_address", "client_port", "event_id", "event_time_microseconds", "http_user_agent",
			"interface", "roles", "type", "user"}},
		{everyField(), []string{"account", "arguments", "client_address", "client_id", "client_port", "event_id", "event_time_microseconds",
			"exception_code", "failure_reason", "http_status", "http_user_agent", "interface", "mode", "outcome", "processor", "query",
			"query_duration_us", "query_id", "query_kind", "read_bytes", "read_rows", "result_rows", "roles", "session_id", "subject",
			"tool", "type", "user", "written_rows"}},
	} {
		var buf bytes.Buffer
		New(&buf).Write(tc.in)
		if got := keys(lines(t, buf.Bytes())[0]); !slices.Equal(got, tc.want) {
			t.Errorf("%s: fields %v, want %v", tc.in.Type, got, tc.want)
		}
	}
}

// everyField returns a Record with every field set, and hostile text.
func everyField() Record {
	return Record{
		Type: Query, User: "zoë 'o\\'brien\"\n", Subject: "sub-1", Processor: "corp", Roles: []string{"analyst", "ädmin'`"},
		Account: "svc_reader", Mode: "service", Interface: InterfaceGateway, ClientAddress: "2001:db8::1", ClientPort: 65535,
		HTTPUserAgent: "curl/8 \u2028", QueryID: "q-1", SessionID: "s-1", QueryKind: "SELECT",
		Query: "SELECT 'a\\b', \"c\" -- \u00e9\u6f22\U0001F600\t\x00\x7f", Tool: "run_query", Arguments: `{"database":"usage"}`,
		Outcome: "failed", DurationMicroseconds: 1<<63 + 5, HTTPStatus: 500, ExceptionCode: -2147483648, FailureReason: "Code: 60",
		ReadRows: 1<<64 - 1, ReadBytes: 2, WrittenRows: 3, ResultRows: 4, ClientID: "client-1",
	}
}

// Client-sent fields are bounded whoever writes the record (the auth
// endpoint's ticket path wrote them whole).
func TestClientTextIsBounded(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	long := strings.Repeat("u", 10000)
	l.Write(Record{Type: LoginFailure, User: long, HTTPUserAgent: long})
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"user", "http_user_agent"} {
		if n := len(rec[f].(string)); n != maxClientText {
			t.Errorf("%s is %d bytes, want %d", f, n, maxClientText)
		}
	}
}
