package native_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// Service mode: everyone runs as the service account, named by quota key
// and, on every version, in the client info ClickHouse logs (os_user and
// client_name); the audit trail records each query with interface native.
func TestServiceModeAndAudit(t *testing.T) {
	trail := filepath.Join(t.TempDir(), "audit.jsonl")
	s := newStack(t, chtest.Options{ExtraUsers: []chtest.User{{Name: "svc", Password: "svc-pw", Quota: chtest.KeyedQuota}}}, `  mode: service
  user: svc
  password: svc-pw
  quota_key: true
  settings: {max_execution_time: "30"}
`, "audit: {file: "+trail+"}")
	erin := s.token(t, "erin@example.com", "ch-analysts")
	out, err := s.client(t, nil, "--password", erin, "--query", chtest.SelfSQL("user, quota_key, os_user, client_name"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(strings.TrimSpace(out), "\t")
	if len(f) != 4 || f[0] != "svc" || f[1] != "erin@example.com" || f[2] != "erin@example.com" || !strings.Contains(f[3], "clickgate (user erin@example.com)") {
		t.Fatalf("ClickHouse saw %q", out)
	}
	// Server logs (Log packets) reach the client; the text-valued setting
	// goes with a numeric one (the fixed max_execution_time).
	if _, err := s.client(t, nil, "--password", erin, "--send_logs_level", "trace", "--query", "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	// External data goes with the query.
	dir := t.TempDir()
	ext := filepath.Join(dir, "ext.tsv")
	if err := os.WriteFile(ext, []byte("1\ta\n2\tb\n3\tc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ext1 := []string{"--query", "SELECT sum(n), groupArray(s) FROM ext", "--external", "--file", ext, "--name", "ext", "--structure", "n UInt32, s String"}
	out, err = s.client(t, nil, append([]string{"--password", erin, "--compression", "1"}, ext1...)...)
	if err != nil || strings.TrimSpace(out) != "6\t['a','b','c']" {
		t.Fatalf("external data: %q %v", out, err)
	}
	// Uncompressed, a read's external data is refused: a read runs
	// uncompressed (as the client asked), and clickgate sends a client's
	// blocks to ClickHouse only each in a compressed frame of its own.
	if _, err = s.client(t, nil, append([]string{"--password", erin, "--compression", "0"}, ext1...)...); err == nil || !strings.Contains(err.Error(), "compression") {
		t.Fatalf("uncompressed external data: %v", err)
	}
	// A refused query is recorded as refused; its data is dropped, and
	// the next query on the same connection works.
	if _, err := s.client(t, nil, "--password", erin, "--multiquery", "--query", "SELECT 1 SETTINGS max_execution_time = 0; SELECT 2"); err == nil {
		t.Fatal("a refused query in --multiquery passed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var queries, refused int
		if b, err := os.ReadFile(trail); err == nil {
			for line := range strings.Lines(string(b)) {
				var rec map[string]any
				if json.Unmarshal([]byte(line), &rec) != nil {
					continue
				}
				if rec["type"] == "LoginSuccess" && rec["interface"] != "native" {
					t.Fatalf("a login on interface %v", rec["interface"])
				}
				if rec["interface"] != "native" || rec["user"] != "erin@example.com" {
					continue
				}
				switch rec["type"] {
				case "Query":
					if rec["account"] != "svc" || rec["query_id"] == "" || rec["query_kind"] != "SELECT" {
						t.Fatalf("Query event %v", rec)
					}
					if rec["outcome"] == "ok" {
						queries++
					}
				case "QueryRefused":
					refused++
				}
			}
		}
		if queries >= 3 && refused >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit trail has %d Query and %d QueryRefused events of interface native", queries, refused)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clickhouse-client --jwt sends the token with ClickHouse's JWT marker as
// the user name: clickgate takes it as the token (18.16's client has no
// --jwt, so the Hello is written here).
func TestJWTHello(t *testing.T) {
	s := newStack(t, chtest.Options{}, mappedYAML)
	hello := func(user, password string) (proto.ServerCode, string) {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b := proto.Buffer{}
		proto.ClientHello{Name: "jwt-test", Major: 24, Minor: 1, ProtocolVersion: 54460, User: user, Password: password}.Encode(&b)
		if _, err := c.Write(b.Buf); err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := proto.NewReader(bufio.NewReader(c))
		code, err := r.UVarInt()
		if err != nil {
			t.Fatal(err)
		}
		if proto.ServerCode(code) == proto.ServerCodeException {
			var e proto.Exception
			if err := e.DecodeAware(r, 0); err != nil {
				t.Fatal(err)
			}
			return proto.ServerCodeException, e.Message
		}
		var h proto.ServerHello
		if err := h.DecodeAware(r, 54460); err != nil {
			t.Fatal(err)
		}
		if h.Revision != 54412 {
			t.Fatalf("revision %d, want 18.16's 54412", h.Revision)
		}
		return proto.ServerCodeHello, h.Name
	}
	tok := s.token(t, "alice@example.com", "ch-analysts")
	if code, msg := hello(" JWT AUTHENTICATION ", tok); code != proto.ServerCodeHello {
		t.Fatalf("--jwt: %v %s", code, msg)
	}
	if code, msg := hello(" INTERSERVER SECRET ", tok); code != proto.ServerCodeException {
		t.Fatalf("the inter-server marker: %v %s", code, msg)
	}
	if code, msg := hello(" JWT AUTHENTICATION ", "not-a-token"); code != proto.ServerCodeException || !strings.Contains(msg, "516") && !strings.Contains(msg, "AUTHENTICATION_FAILED") {
		t.Fatalf("a bad JWT: %v %s", code, msg)
	}
}

// A connection lives no longer than its token: each query checks it
// again, and an expired one ends the connection with 516.
func TestTokenExpiresOnOpenConnection(t *testing.T) {
	s := newStackProcessor(t, chtest.Options{}, ", leeway: 1ms, cache_ttl: 1s", mappedYAML)
	claims := testkit.Claims(servertest.IssuerURL, "clickhouse", "bob@example.com", "ch-admin")
	claims["exp"] = time.Now().Add(3 * time.Second).Unix()
	tok := s.iss.Key.Sign(t, claims)
	c := s.goClient(t, tok, nil)
	ctx := context.Background()
	if got, err := queryOne(ctx, c, "SELECT 'before'"); err != nil || got != "before" {
		t.Fatalf("before expiry: %q %v", got, err)
	}
	time.Sleep(4 * time.Second)
	_, err := queryOne(ctx, c, "SELECT 'after'")
	if err == nil || !strings.Contains(err.Error(), "516") {
		t.Fatalf("after expiry: %v, want 516", err)
	}
}

// The gateway's limits apply to native queries: the person's requests
// per minute are counted across the listener.
func TestLimits(t *testing.T) {
	s := newStack(t, chtest.Options{}, mappedYAML, `limits: {people: {"bob@example.com": {requests_per_minute: 2}}}`)
	bob := s.token(t, "bob@example.com", "ch-admin")
	for i := range 2 {
		if _, err := s.client(t, nil, "--password", bob, "--query", "SELECT 1"); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	_, err := s.client(t, nil, "--password", bob, "--query", "SELECT 1")
	if err == nil || !strings.Contains(err.Error(), "requests_per_minute") {
		t.Fatalf("the third query in a minute: %v", err)
	}
}
