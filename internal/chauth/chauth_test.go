package chauth_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/chauth"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/testkit"
	"github.com/clickgate/clickgate/internal/token"
)

const (
	issuer      = "https://idp.test"
	publicURL   = "https://clickgate.test"
	remoteIss   = "https://remote.test"
	alice       = "alice@example.com"
	ticketTTL   = 5 * time.Minute
	ticketBytes = "0123456789abcdef0123456789abcdef"
)

// endpoint is /clickhouse/auth over a real authenticator (a jwt processor
// with a key file, and one whose JWKS endpoint is down), real tickets on a
// settable clock, and a real session log file.
type endpoint struct {
	key     *testkit.Key
	tickets *clickhouse.Tickets
	clock   time.Time
	logPath string
	handler http.Handler
	// noTickets is the same endpoint without http_auth tickets.
	noTickets http.Handler
}

func newEndpoint(t *testing.T) *endpoint {
	t.Helper()
	e := &endpoint{key: testkit.NewKey(t, jose.ES256, "k1"), clock: time.Now()}
	dir := t.TempDir()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
server: {public_url: %s}
token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse, %s/mcp], username_claim: email}
  remote: {type: jwt, issuer: %s, jwks_uri: %s/jwks, audiences: [clickhouse]}
directory: {processors: [corp, remote]}
`, publicURL, issuer, testkit.WriteJWKS(t, dir, e.key), publicURL, remoteIss, down.URL)))
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifierFromConfig(cfg.Directory.Processors, cfg.TokenProcessors, token.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := identity.NewDirectory(identity.DirectoryConfig{Common: []string{"reader"}})
	if err != nil {
		t.Fatal(err)
	}
	e.logPath = filepath.Join(dir, "session.log")
	log, err := audit.Open(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	a := authn.New(v, d, log, prometheus.NewRegistry())
	a.AdmitToClickHouse(authn.ClickHouseAudiences(cfg))
	e.tickets, err = clickhouse.NewTickets([]byte(ticketBytes), ticketTTL, func() time.Time { return e.clock })
	if err != nil {
		t.Fatal(err)
	}
	e.handler = chauth.Handler(a, e.tickets, log)
	e.noTickets = chauth.Handler(a, nil, log)
	return e
}

func (e *endpoint) token(t *testing.T, email string, edit func(map[string]any)) string {
	t.Helper()
	c := testkit.Claims(issuer, "clickhouse", email)
	if edit != nil {
		edit(c)
	}
	return e.key.Sign(t, c)
}

func (e *endpoint) ticket(t *testing.T, user string) string {
	t.Helper()
	raw, err := e.tickets.Issue(user)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// records returns the session log, line by line.
func (e *endpoint) records(t *testing.T) []audit.Record {
	t.Helper()
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// tamper replaces a JWT's payload claim sub, keeping the signature.
func tamper(t *testing.T, raw, sub string) string {
	t.Helper()
	parts := strings.Split(raw, ".")
	c := testkit.UnverifiedClaims(t, raw)
	c["sub"] = sub
	b, _ := json.Marshal(c)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// ClickHouse's HTTPAuthClient sends GET with Basic(user, password): 200
// with {"settings":{}} only for the password's own user, else a refusal
// that names why (and never the password), recorded in the session log.
func TestHandler(t *testing.T) {
	type answer struct {
		status     int
		body       string // in the body (all of it for 200)
		basicChall bool   // WWW-Authenticate: Basic
	}
	type record struct {
		typ, user, processor, reason string
	}
	for _, tc := range []struct {
		name          string
		authorization func(t *testing.T, e *endpoint) string // "" sends none
		before        func(e *endpoint)                      // e.g. move the clock
		noTickets     bool
		want          answer
		rec           *record // nil: nothing recorded
	}{
		// Credentials that are not Basic(user, password): no one to record.
		{name: "no Authorization", authorization: func(*testing.T, *endpoint) string { return "" },
			want: answer{401, "send Authorization: Basic with the ClickHouse user and a token as password", true}},
		{name: "Bearer instead of Basic", authorization: func(t *testing.T, e *endpoint) string { return "Bearer " + e.token(t, alice, nil) },
			want: answer{401, "send Authorization: Basic", true}},
		{name: "Basic not base64", authorization: func(*testing.T, *endpoint) string { return "Basic %%%" },
			want: answer{401, "send Authorization: Basic", true}},
		{name: "Basic without colon", authorization: func(*testing.T, *endpoint) string {
			return "Basic " + base64.StdEncoding.EncodeToString([]byte(alice))
		}, want: answer{401, "send Authorization: Basic", true}},
		{name: "empty password", authorization: func(*testing.T, *endpoint) string { return basic(alice, "") },
			want: answer{401, "send Authorization: Basic", true}},

		// A token as password.
		{name: "token for the user", authorization: func(t *testing.T, e *endpoint) string { return basic(alice, e.token(t, alice, nil)) },
			want: answer{200, `{"settings":{}}` + "\n", false}, rec: &record{audit.LoginSuccess, alice, "corp", ""}},
		{name: "token for another user", authorization: func(t *testing.T, e *endpoint) string {
			return basic("bob@example.com", e.token(t, alice, nil))
		}, want: answer{403, `the token is for ClickHouse user "alice@example.com", not "bob@example.com"`, false},
			rec: &record{audit.LoginFailure, "bob@example.com", "corp", "user mismatch"}},
		{name: "user differs in case", authorization: func(t *testing.T, e *endpoint) string {
			return basic("ALICE@example.com", e.token(t, alice, nil))
		}, want: answer{403, "user mismatch", false}, rec: &record{audit.LoginFailure, "ALICE@example.com", "corp", "user mismatch"}},
		{name: "user with trailing space", authorization: func(t *testing.T, e *endpoint) string {
			return basic(alice+" ", e.token(t, alice, nil))
		}, want: answer{403, "user mismatch", false}, rec: &record{audit.LoginFailure, alice + " ", "corp", "user mismatch"}},
		{name: "expired token", authorization: func(t *testing.T, e *endpoint) string {
			return basic(alice, e.token(t, alice, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))
		}, want: answer{401, "token: corp: token expired at", false}, rec: &record{audit.LoginFailure, alice, "corp", "token expired"}},
		{name: "token not for ClickHouse", authorization: func(t *testing.T, e *endpoint) string {
			return basic(alice, e.token(t, alice, func(c map[string]any) { c["aud"] = publicURL + "/mcp" }))
		}, want: answer{401, "aud must include one of clickhouse", false}, rec: &record{audit.LoginFailure, alice, "corp", "not for ClickHouse"}},
		{name: "garbage password", authorization: func(*testing.T, *endpoint) string { return basic(alice, "hunter2") },
			want: answer{401, "no configured processor", false}, rec: &record{audit.LoginFailure, alice, "", "no configured processor"}},
		{name: "IdP down", authorization: func(t *testing.T, e *endpoint) string {
			return basic(alice, e.token(t, alice, func(c map[string]any) { c["iss"] = remoteIss }))
		}, want: answer{503, "no usable signing keys", false}, rec: &record{audit.LoginFailure, alice, "remote", "no usable signing keys"}},

		// A clickgate ticket as password (http_auth mode).
		{name: "ticket for the user", authorization: func(t *testing.T, e *endpoint) string { return basic(alice, e.ticket(t, alice)) },
			want: answer{200, `{"settings":{}}` + "\n", false}, rec: &record{audit.LoginSuccess, alice, "clickgate-ticket", ""}},
		{name: "ticket near its end", authorization: func(t *testing.T, e *endpoint) string { return basic(alice, e.ticket(t, alice)) },
			before: func(e *endpoint) { e.clock = e.clock.Add(ticketTTL - time.Second) },
			want:   answer{200, `{"settings":{}}` + "\n", false}, rec: &record{audit.LoginSuccess, alice, "clickgate-ticket", ""}},
		{name: "ticket for another user", authorization: func(t *testing.T, e *endpoint) string { return basic("bob@example.com", e.ticket(t, alice)) },
			want: answer{403, `the ticket is for ClickHouse user "alice@example.com", not "bob@example.com"`, false},
			rec:  &record{audit.LoginFailure, "bob@example.com", "clickgate-ticket", "the ticket is for"}},
		{name: "expired ticket", authorization: func(t *testing.T, e *endpoint) string { return basic(alice, e.ticket(t, alice)) },
			before: func(e *endpoint) { e.clock = e.clock.Add(ticketTTL + time.Minute) },
			want:   answer{403, "clickgate ticket: ", false}, rec: &record{audit.LoginFailure, alice, "clickgate-ticket", "expired"}},
		{name: "tampered ticket", authorization: func(t *testing.T, e *endpoint) string {
			return basic("bob@example.com", tamper(t, e.ticket(t, alice), "bob@example.com"))
		}, want: answer{403, "clickgate ticket: bad signature", false}, rec: &record{audit.LoginFailure, "bob@example.com", "clickgate-ticket", "bad signature"}},
		{name: "ticket of another clickgate", authorization: func(t *testing.T, e *endpoint) string {
			other, err := clickhouse.NewTickets(nil, ticketTTL, nil)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := other.Issue(alice)
			return basic(alice, raw)
		}, want: answer{403, "clickgate ticket: bad signature", false}, rec: &record{audit.LoginFailure, alice, "clickgate-ticket", "bad signature"}},
		{name: "ticket where tickets are off", noTickets: true, authorization: func(t *testing.T, e *endpoint) string { return basic(alice, e.ticket(t, alice)) },
			want: answer{401, `no token processor trusts issuer "clickgate"`, false}, rec: &record{audit.LoginFailure, alice, "", "trusts issuer"}},
		{name: "token where tickets are on", authorization: func(t *testing.T, e *endpoint) string { return basic(alice, e.token(t, alice, nil)) },
			want: answer{200, `{"settings":{}}` + "\n", false}, rec: &record{audit.LoginSuccess, alice, "corp", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t)
			authz := tc.authorization(t, e)
			if tc.before != nil {
				tc.before(e)
			}
			r := httptest.NewRequest(http.MethodGet, "/clickhouse/auth", nil)
			r.RemoteAddr = "127.0.0.1:51234"
			r.Header.Set("User-Agent", "ClickHouse")
			if authz != "" {
				r.Header.Set("Authorization", authz)
			}
			w := httptest.NewRecorder()
			h := e.handler
			if tc.noTickets {
				h = e.noTickets
			}
			h.ServeHTTP(w, r)
			body := w.Body.String()

			if w.Code != tc.want.status {
				t.Errorf("status %d, want %d (%s)", w.Code, tc.want.status, body)
			}
			if tc.want.status == 200 {
				if body != tc.want.body || w.Header().Get("Content-Type") != "application/json" {
					t.Errorf("200 body %q (%s), want %q as application/json", body, w.Header().Get("Content-Type"), tc.want.body)
				}
				var resp chauth.Response
				if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.Settings == nil {
					t.Errorf("200 body is not {\"settings\":{…}}: %v", err)
				}
			} else if !strings.Contains(body, tc.want.body) || !strings.HasPrefix(body, "clickgate: ") {
				t.Errorf("body %q lacks %q", body, tc.want.body)
			}
			if got := w.Header().Get("WWW-Authenticate"); (got == `Basic realm="clickgate"`) != tc.want.basicChall {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if _, pw, ok := r.BasicAuth(); ok && len(pw) > 8 {
				sig := pw[strings.LastIndex(pw, ".")+1:]
				if strings.Contains(body, sig) {
					t.Errorf("the answer echoes the password: %s", body)
				}
			}

			recs := e.records(t)
			if tc.rec == nil {
				if len(recs) != 0 {
					t.Errorf("recorded %+v, want nothing", recs)
				}
				return
			}
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1: %+v", len(recs), recs)
			}
			got := recs[0]
			if got.Type != tc.rec.typ || got.User != tc.rec.user || got.Processor != tc.rec.processor ||
				got.Interface != audit.InterfaceAuthEndpoint || got.ClientAddress != "127.0.0.1" || got.ClientPort != 51234 ||
				got.HTTPUserAgent != "ClickHouse" || !strings.Contains(got.FailureReason, tc.rec.reason) || (tc.rec.reason == "") != (got.FailureReason == "") {
				t.Errorf("record %+v, want %+v", got, *tc.rec)
			}
			if _, pw, _ := r.BasicAuth(); pw != "" && strings.Contains(fmt.Sprintf("%+v", got), pw) {
				t.Errorf("the record holds the password: %+v", got)
			}
		})
	}
}

// Every request is one record; the endpoint keeps no state between them
// (ClickHouse does not cache, so it asks on every login).
func TestHandlerRecordsEveryCall(t *testing.T) {
	e := newEndpoint(t)
	tok, tic := e.token(t, alice, nil), e.ticket(t, alice)
	for i := 0; i < 3; i++ {
		for _, pw := range []string{tok, tic} {
			r := httptest.NewRequest(http.MethodGet, "/clickhouse/auth", nil)
			r.Header.Set("Authorization", basic(alice, pw))
			w := httptest.NewRecorder()
			e.handler.ServeHTTP(w, r)
			if w.Code != 200 {
				t.Fatalf("call %d: %d %s", i, w.Code, w.Body)
			}
		}
	}
	recs := e.records(t)
	if len(recs) != 6 {
		t.Fatalf("%d records, want 6", len(recs))
	}
	for i, r := range recs {
		want := map[bool]string{true: "corp", false: "clickgate-ticket"}[i%2 == 0]
		if r.Type != audit.LoginSuccess || r.Processor != want {
			t.Errorf("record %d: %+v, want success by %s", i, r, want)
		}
	}
}

// Without a session log, the endpoint answers the same.
func TestHandlerWithoutLog(t *testing.T) {
	e := newEndpoint(t)
	h := chauth.Handler(nil, e.tickets, nil)
	for user, want := range map[string]int{alice: 200, "bob@example.com": 403} {
		r := httptest.NewRequest(http.MethodGet, "/clickhouse/auth", nil)
		r.Header.Set("Authorization", basic(user, e.ticket(t, alice)))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("%s: %d, want %d", user, w.Code, want)
		}
	}
}
