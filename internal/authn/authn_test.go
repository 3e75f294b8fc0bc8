package authn_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/testkit"
	"github.com/clickgate/clickgate/internal/token"
)

const (
	issuer      = "https://idp.test"
	publicURL   = "https://clickgate.test"
	mcpResource = publicURL + "/mcp"
	remoteIss   = "https://remote.test"
	remoteAddr  = "192.0.2.7:40123"
	userAgent   = "authn-test/1.0"
)

// world is what every case shares: the corp processor's signing key, keys
// it does not trust, and two IdPs on loopback: an introspection endpoint
// (opaque tokens) and a JWKS endpoint that is down.
type world struct {
	key      *testkit.Key // corp's key, kid k1
	impostor *testkit.Key // another key claiming kid k1
	stranger *testkit.Key // a key corp does not know, kid k2
	config   string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{
		key:      testkit.NewKey(t, jose.ES256, "k1"),
		impostor: testkit.NewKey(t, jose.ES256, "k1"),
		stranger: testkit.NewKey(t, jose.ES256, "k2"),
	}
	jwks := testkit.WriteJWKS(t, t.TempDir(), w.key)

	introspect := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		rw.Header().Set("Content-Type", "application/json")
		switch r.PostForm.Get("token") {
		case "opaque-good":
			fmt.Fprint(rw, `{"active":true,"sub":"svc@example.com","exp":`+fmt.Sprint(time.Now().Add(time.Hour).Unix())+`}`)
		case "opaque-down":
			http.Error(rw, "maintenance", http.StatusServiceUnavailable)
		default:
			fmt.Fprint(rw, `{"active":false}`)
		}
	}))
	t.Cleanup(introspect.Close)
	down := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		http.Error(rw, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)

	w.config = fmt.Sprintf(`
server: {public_url: %s}
token_processors:
  corp:
    type: jwt
    issuer: %s
    jwks_file: %s
    audiences: [clickhouse, %s]
    algorithms: [ES256]
    required_claims: {email_verified: true}
    username_claim: email
    groups_claim: groups
  remote:
    type: jwt
    issuer: %s
    jwks_uri: %s/jwks
    audiences: [clickhouse]
  intro:
    type: opaque
    introspection_url: %s/introspect
    client_id: clickgate
    client_secret: secret
directory:
  processors: [corp, remote, intro]
  allowed_domains: [example.com]
  roles:
    mapping: {"/ch-admins": ch-admin}
    filter: "^ch-.*$"
    transform: "s/^ch-//"
    common: [mcp_reader]
`, publicURL, issuer, jwks, mcpResource, remoteIss, down.URL, introspect.URL)
	return w
}

// verifier parses yaml and builds the token verifier of its processors.
func verifier(t *testing.T, yaml string) (*config.Config, *token.Verifier) {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifierFromConfig(cfg.Directory.Processors, cfg.TokenProcessors, token.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, v
}

// fixture is one Authenticator with its own session log file and registry.
type fixture struct {
	auth    *authn.Authenticator
	reg     *prometheus.Registry
	logPath string
}

func (w *world) fixture(t *testing.T, processors ...string) *fixture {
	t.Helper()
	yaml := w.config
	if len(processors) > 0 {
		yaml = strings.Replace(yaml, "processors: [corp, remote, intro]", "processors: ["+strings.Join(processors, ", ")+"]", 1)
	}
	cfg, v := verifier(t, yaml)
	d := cfg.Directory
	dir, err := identity.NewDirectory(identity.DirectoryConfig{
		AllowedDomains: d.AllowedDomains, Mapping: d.Roles.Mapping, Filter: d.Roles.Filter,
		Transform: d.Roles.Transform, Common: d.Roles.Common,
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{reg: prometheus.NewRegistry(), logPath: filepath.Join(t.TempDir(), "session.log")}
	log, err := audit.Open(f.logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	f.auth = authn.New(v, dir, log, f.reg)
	f.auth.AdmitToClickHouse(authn.ClickHouseAudiences(cfg))
	return f
}

// records returns the session log's lines, each decoded, and the raw text.
func (f *fixture) records(t *testing.T) ([]audit.Record, string) {
	t.Helper()
	b, err := os.ReadFile(f.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		var r audit.Record
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("session log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out, string(b)
}

// attempts returns clickgate_auth_attempts_total by "interface/processor/result".
func (f *fixture) attempts(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "clickgate_auth_attempts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out[l["interface"]+"/"+l["processor"]+"/"+l["result"]] = m.GetCounter().GetValue()
		}
	}
	return out
}

func request() *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/clickhouse/auth", nil)
	r.RemoteAddr = remoteAddr
	r.Header.Set("User-Agent", userAgent)
	return r
}

// claims are alice's, valid for an hour, for ClickHouse.
func claims() map[string]any {
	return testkit.Claims(issuer, "clickhouse", "alice@example.com", "/ch-admins", "ch-data", "staff")
}

func with(c map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

// hs256 signs claims with a shared secret, which corp does not allow.
func hs256(t *testing.T, c map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(strings.Repeat("s", 32))}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(mustJSON(t, c))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// unsigned is a JWT with alg "none", which nothing accepts.
func unsigned(t *testing.T, c map[string]any) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(mustJSON(t, c)) + "."
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// secretParts are the pieces of a raw token that must never be recorded:
// the whole token and, for a JWT, its payload and signature (the header
// names only the algorithm and key, and a parse error may quote it).
func secretParts(raw string) []string {
	parts := []string{raw}
	if len(raw) > 256 {
		parts = append(parts, raw[:64], raw[len(raw)-64:])
	}
	if segs := strings.Split(raw, "."); len(segs) == 3 {
		for _, s := range segs[1:] {
			if len(s) >= 8 {
				parts = append(parts, s)
			}
		}
	}
	return parts
}

// Every refusal reason is recorded once, as a LoginFailure naming the
// processor that proved or refused the token, and counted once with the
// same labels; the answer's status and challenge follow from the reason.
func TestAuthenticateRefusals(t *testing.T) {
	w := newWorld(t)
	now := time.Now()
	hour := time.Hour
	for _, tc := range []struct {
		name       string
		processors []string // directory.processors; nil: corp, remote, intro
		token      func(t *testing.T) string
		user       string // the Basic user, if any
		iface      string // default gateway
		reason     token.Reason
		processor  string // the processor recorded and counted
		status     int
		message    string // in the error, the failure_reason and the challenge
	}{
		{name: "too large", token: func(t *testing.T) string { return strings.Repeat("a", token.MaxTokenBytes+1) },
			reason: token.ReasonTooLarge, status: 401, message: "the limit is 16384"},
		{name: "empty", token: func(t *testing.T) string { return "" },
			reason: token.ReasonMalformed, status: 401, message: "token is empty"},
		{name: "control character", token: func(t *testing.T) string { return "abc\ndef" },
			reason: token.ReasonMalformed, status: 401, message: "control"},
		{name: "malformed JWT", token: func(t *testing.T) string { return "eyJhbGciOiJFUzI1NiJ9.not-json-at-all.c2ln" },
			reason: token.ReasonMalformed, processor: "corp", status: 401, message: "not a valid signed JWT"},
		{name: "alg none", token: func(t *testing.T) string { return unsigned(t, claims()) },
			reason: token.ReasonAlgorithm, status: 401, message: `algorithm "none" is never accepted`},
		{name: "algorithm not allowed", token: func(t *testing.T) string { return hs256(t, claims()) },
			reason: token.ReasonAlgorithm, processor: "corp", status: 401, message: `algorithm "HS256" is not allowed`},
		{name: "untrusted issuer", token: func(t *testing.T) string { return w.key.Sign(t, with(claims(), "iss", "https://evil.test")) },
			reason: token.ReasonIssuer, status: 401, message: `no token processor trusts issuer "https://evil.test"`},
		{name: "no issuer", token: func(t *testing.T) string { return w.key.Sign(t, with(claims(), "iss", nil)) },
			reason: token.ReasonIssuer, status: 401, message: "has no iss"},
		{name: "wrong audience", token: func(t *testing.T) string { return w.key.Sign(t, with(claims(), "aud", []string{"grafana"})) },
			reason: token.ReasonAudience, processor: "corp", status: 401, message: `audience "grafana" is not one of clickhouse`},
		{name: "expired", token: func(t *testing.T) string {
			return w.key.Sign(t, with(claims(), "iat", now.Add(-2*hour).Unix(), "nbf", now.Add(-2*hour).Unix(), "exp", now.Add(-hour).Unix()))
		}, reason: token.ReasonExpired, processor: "corp", status: 401, message: "token expired at"},
		{name: "no exp", token: func(t *testing.T) string { return w.key.Sign(t, with(claims(), "exp", nil)) },
			reason: token.ReasonExpired, processor: "corp", status: 401, message: "no exp claim"},
		{name: "not yet valid", token: func(t *testing.T) string { return w.key.Sign(t, with(claims(), "nbf", now.Add(hour).Unix())) },
			reason: token.ReasonNotYetValid, processor: "corp", status: 401, message: "not valid before"},
		{name: "issued in the future", token: func(t *testing.T) string { return w.key.Sign(t, with(claims(), "iat", now.Add(hour).Unix())) },
			reason: token.ReasonIssuedAt, processor: "corp", status: 401, message: "issued in the future"},
		{name: "unknown key", token: func(t *testing.T) string { return w.stranger.Sign(t, claims()) },
			reason: token.ReasonUnknownKey, processor: "corp", status: 401, message: `no ES256 key with kid "k2"`},
		{name: "bad signature", token: func(t *testing.T) string { return w.impostor.Sign(t, claims()) },
			reason: token.ReasonSignature, processor: "corp", status: 401, message: "signature does not verify"},
		{name: "required claim false", token: func(t *testing.T) string { return w.key.Sign(t, with(claims(), "email_verified", false)) },
			reason: token.ReasonClaims, processor: "corp", status: 401, message: "email_verified"},
		{name: "no user name", token: func(t *testing.T) string { return w.key.Sign(t, with(claims(), "email", nil)) },
			reason: token.ReasonClaims, processor: "corp", status: 401, message: "email"},
		{name: "inactive opaque token", token: func(t *testing.T) string { return "opaque-revoked" },
			reason: token.ReasonInactive, processor: "intro", status: 401, message: "not active"},
		{name: "no processor for opaque tokens", processors: []string{"corp"}, token: func(t *testing.T) string { return "opaque-good" },
			reason: token.ReasonNoProcessor, status: 401, message: "no configured processor checks tokens of this kind"},
		{name: "introspection down", token: func(t *testing.T) string { return "opaque-down" },
			reason: token.ReasonUnavailable, processor: "intro", status: 503, message: "introspection endpoint answered HTTP 503"},
		{name: "JWKS down", token: func(t *testing.T) string {
			return w.key.Sign(t, with(claims(), "iss", remoteIss))
		}, reason: token.ReasonUnavailable, processor: "remote", status: 503, message: "no usable signing keys"},
		{name: "domain not allowed", token: func(t *testing.T) string {
			return w.key.Sign(t, with(claims(), "email", "mallory@elsewhere.test"))
		}, reason: authn.ReasonDenied, processor: "corp", status: 403, message: `e-mail domain "elsewhere.test" is not in directory.allowed_domains`},
		{name: "user mismatch", token: func(t *testing.T) string { return w.key.Sign(t, claims()) }, user: "bob@example.com",
			reason: authn.ReasonUserMismatch, processor: "corp", status: 403, message: `the token is for ClickHouse user "alice@example.com", not "bob@example.com"`},
		{name: "user differs in case", token: func(t *testing.T) string { return w.key.Sign(t, claims()) }, user: "Alice@example.com",
			reason: authn.ReasonUserMismatch, processor: "corp", status: 403, message: `not "Alice@example.com"`},
		{name: "MCP token at the gateway", token: func(t *testing.T) string { return w.key.Sign(t, with(claims(), "aud", []string{mcpResource})) },
			reason: token.ReasonAudience, processor: "corp", status: 401, message: "aud must include one of clickhouse"},
		{name: "MCP token at the auth endpoint", iface: audit.InterfaceAuthEndpoint, user: "alice@example.com",
			token:  func(t *testing.T) string { return w.key.Sign(t, with(claims(), "aud", []string{mcpResource})) },
			reason: token.ReasonAudience, processor: "corp", status: 401, message: "aud must include one of clickhouse"},
		{name: "MCP token on the native listener", iface: "native",
			token: func(t *testing.T) string {
				return w.key.Sign(t, with(claims(), "aud", []string{mcpResource, "account"}))
			},
			reason: token.ReasonAudience, processor: "corp", status: 401, message: "aud must include one of clickhouse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := w.fixture(t, tc.processors...)
			iface := tc.iface
			if iface == "" {
				iface = audit.InterfaceGateway
			}
			raw := tc.token(t)
			res, err := f.auth.Authenticate(context.Background(), request(), authn.Credentials{Token: raw, User: tc.user}, iface)
			if err == nil || res != nil {
				t.Fatalf("admitted: %+v, %v", res, err)
			}
			if got := authn.Reason(err); got != tc.reason {
				t.Errorf("reason %q, want %q (%v)", got, tc.reason, err)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q lacks %q", err, tc.message)
			}
			if got := authn.Status(err); got != tc.status {
				t.Errorf("status %d, want %d", got, tc.status)
			}
			wantChallenge := fmt.Sprintf(`Bearer realm="clickgate", error="invalid_token", error_description=%q`, authn.HeaderSafe(err.Error()))
			if got := authn.Challenge(err); got != wantChallenge || !strings.Contains(got, authn.HeaderSafe(tc.message)) {
				t.Errorf("challenge %s, want %s", got, wantChallenge)
			}

			recs, text := f.records(t)
			if len(recs) != 1 {
				t.Fatalf("%d session log records, want 1:\n%s", len(recs), text)
			}
			r := recs[0]
			want := audit.Record{
				Type: audit.LoginFailure, EventID: r.EventID, EventTimeMicroseconds: r.EventTimeMicroseconds,
				User: tc.user, Processor: tc.processor, Roles: []string{},
				ClientAddress: "192.0.2.7", ClientPort: 40123, Interface: iface, HTTPUserAgent: userAgent,
				FailureReason: err.Error(),
			}
			if fmt.Sprintf("%+v", r) != fmt.Sprintf("%+v", want) {
				t.Errorf("record\n got %+v\nwant %+v", r, want)
			}
			if r.EventID == "" || r.EventTimeMicroseconds == "" || r.Subject != "" {
				t.Errorf("record stamps: %+v", r)
			}
			for _, s := range secretParts(raw) {
				if s != "" && strings.Contains(text, s) {
					t.Errorf("the session log holds the token (%.20q…):\n%s", s, text)
				}
				if s != "" && strings.Contains(err.Error(), s) {
					t.Errorf("the error holds the token (%.20q…): %v", s, err)
				}
			}

			got := f.attempts(t)
			key := iface + "/" + tc.processor + "/" + string(tc.reason)
			if len(got) != 1 || got[key] != 1 {
				t.Errorf("clickgate_auth_attempts_total %v, want only %s = 1", got, key)
			}
		})
	}
}

// The reasons the table above covers: each of token's refusal reasons that
// a request can provoke, plus authn's own. (internal: a request to the IdP
// that cannot even be built; rejected: an error token does not classify.)
func TestRefusalReasonsCovered(t *testing.T) {
	covered := []token.Reason{
		token.ReasonTooLarge, token.ReasonMalformed, token.ReasonAlgorithm, token.ReasonIssuer,
		token.ReasonAudience, token.ReasonExpired, token.ReasonNotYetValid, token.ReasonIssuedAt,
		token.ReasonUnknownKey, token.ReasonSignature, token.ReasonClaims, token.ReasonInactive,
		token.ReasonNoProcessor, token.ReasonUnavailable, authn.ReasonDenied, authn.ReasonUserMismatch,
	}
	seen := map[token.Reason]bool{}
	for _, r := range covered {
		if seen[r] {
			t.Errorf("reason %q listed twice", r)
		}
		seen[r] = true
	}
	if authn.Reason(errors.New("something else")) != "rejected" {
		t.Errorf("unclassified error: reason %q", authn.Reason(errors.New("something else")))
	}
	if authn.Status(errors.New("something else")) != http.StatusUnauthorized {
		t.Error("unclassified error is not a 401")
	}
}

// A success is recorded once as LoginSuccess with the principal's user,
// roles and subject and the proving processor, and counted as success.
func TestAuthenticateSuccess(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		name       string
		token      func(t *testing.T) string
		user       string
		iface      string
		wantUser   string
		wantRoles  []string
		wantSub    string
		processor  string
		processors []string
	}{
		{name: "bearer at the gateway", token: func(t *testing.T) string { return w.key.Sign(t, claims()) }, iface: audit.InterfaceGateway,
			wantUser: "alice@example.com", wantRoles: []string{"admin", "data", "mcp_reader"}, wantSub: "sub-alice@example.com", processor: "corp"},
		{name: "basic with the same user at the auth endpoint", token: func(t *testing.T) string { return w.key.Sign(t, claims()) },
			user: "alice@example.com", iface: audit.InterfaceAuthEndpoint,
			wantUser: "alice@example.com", wantRoles: []string{"admin", "data", "mcp_reader"}, wantSub: "sub-alice@example.com", processor: "corp"},
		{name: "MCP token at /mcp", token: func(t *testing.T) string { return w.key.Sign(t, with(claims(), "aud", []string{mcpResource})) },
			iface: audit.InterfaceMCP, wantUser: "alice@example.com", wantRoles: []string{"admin", "data", "mcp_reader"}, wantSub: "sub-alice@example.com", processor: "corp"},
		{name: "MCP token at whoami", token: func(t *testing.T) string { return w.key.Sign(t, with(claims(), "aud", []string{mcpResource})) },
			iface: audit.InterfaceWhoami, wantUser: "alice@example.com", wantRoles: []string{"admin", "data", "mcp_reader"}, wantSub: "sub-alice@example.com", processor: "corp"},
		{name: "no groups", token: func(t *testing.T) string { return w.key.Sign(t, with(claims(), "groups", nil)) }, iface: audit.InterfaceGateway,
			wantUser: "alice@example.com", wantRoles: []string{"mcp_reader"}, wantSub: "sub-alice@example.com", processor: "corp"},
		{name: "opaque token by introspection", token: func(t *testing.T) string { return "opaque-good" }, iface: audit.InterfaceGateway,
			wantUser: "svc@example.com", wantRoles: []string{"mcp_reader"}, wantSub: "svc@example.com", processor: "intro"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := w.fixture(t, tc.processors...)
			raw := tc.token(t)
			res, err := f.auth.Authenticate(context.Background(), request(), authn.Credentials{Token: raw, User: tc.user}, tc.iface)
			if err != nil {
				t.Fatal(err)
			}
			if res.Principal.User != tc.wantUser || !slices.Equal(res.Principal.Roles, tc.wantRoles) || res.Identity.Processor != tc.processor {
				t.Errorf("result %+v %+v", res.Identity, res.Principal)
			}
			recs, text := f.records(t)
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1:\n%s", len(recs), text)
			}
			want := audit.Record{
				Type: audit.LoginSuccess, EventID: recs[0].EventID, EventTimeMicroseconds: recs[0].EventTimeMicroseconds,
				User: tc.wantUser, Subject: tc.wantSub, Processor: tc.processor, Roles: tc.wantRoles,
				ClientAddress: "192.0.2.7", ClientPort: 40123, Interface: tc.iface, HTTPUserAgent: userAgent,
			}
			if fmt.Sprintf("%+v", recs[0]) != fmt.Sprintf("%+v", want) {
				t.Errorf("record\n got %+v\nwant %+v", recs[0], want)
			}
			if strings.Contains(text, "failure_reason") {
				t.Errorf("success has a failure_reason: %s", text)
			}
			for _, s := range secretParts(raw) {
				if strings.Contains(text, s) {
					t.Errorf("the session log holds the token: %s", text)
				}
			}
			if got, key := f.attempts(t), tc.iface+"/"+tc.processor+"/success"; len(got) != 1 || got[key] != 1 {
				t.Errorf("clickgate_auth_attempts_total %v, want only %s = 1", got, key)
			}
		})
	}
}

// Cached outcomes are still recorded and counted once per attempt.
func TestAuthenticateRecordsEveryAttempt(t *testing.T) {
	w := newWorld(t)
	f := w.fixture(t)
	good := w.key.Sign(t, claims())
	bad := w.impostor.Sign(t, claims())
	for i := 0; i < 3; i++ {
		for _, raw := range []string{good, bad} {
			_, _ = f.auth.Authenticate(context.Background(), request(), authn.Credentials{Token: raw}, audit.InterfaceGateway)
		}
	}
	recs, text := f.records(t)
	if len(recs) != 6 {
		t.Fatalf("%d records, want 6:\n%s", len(recs), text)
	}
	ids := map[string]bool{}
	for i, r := range recs {
		wantType := audit.LoginSuccess
		if i%2 == 1 {
			wantType = audit.LoginFailure
		}
		if r.Type != wantType || r.Processor != "corp" {
			t.Errorf("record %d: %+v", i, r)
		}
		ids[r.EventID] = true
	}
	if len(ids) != 6 {
		t.Errorf("event_id repeats: %v", ids)
	}
	want := map[string]float64{"gateway/corp/success": 3, "gateway/corp/bad_signature": 3}
	if got := f.attempts(t); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("clickgate_auth_attempts_total %v, want %v", got, want)
	}
}

// Without a session log or a registry, authentication works the same.
func TestAuthenticateWithoutLogOrMetrics(t *testing.T) {
	w := newWorld(t)
	cfg, v := verifier(t, w.config)
	dir, err := identity.NewDirectory(identity.DirectoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	a := authn.New(v, dir, nil, nil)
	a.AdmitToClickHouse(authn.ClickHouseAudiences(cfg))
	if _, err := a.Authenticate(context.Background(), request(), authn.Credentials{Token: w.key.Sign(t, claims())}, audit.InterfaceGateway); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(context.Background(), request(), authn.Credentials{Token: "opaque-revoked"}, audit.InterfaceGateway); authn.Reason(err) != token.ReasonInactive {
		t.Fatalf("got %v", err)
	}
	// Ready names the processors that can be checked without a token.
	ready := a.Ready(context.Background())
	if err, ok := ready["corp"]; !ok || err != nil {
		t.Errorf("corp ready: %v (%v)", err, ok)
	}
	if err := ready["remote"]; err == nil || !token.IsTemporary(err) {
		t.Errorf("remote (JWKS down) ready: %v", err)
	}
}

// Until AdmitToClickHouse is called, no token reaches ClickHouse; MCP is
// unaffected.
func TestNoTokenAdmittedBeforeAdmitToClickHouse(t *testing.T) {
	w := newWorld(t)
	_, v := verifier(t, w.config)
	dir, _ := identity.NewDirectory(identity.DirectoryConfig{})
	var buf bytes.Buffer
	a := authn.New(v, dir, audit.New(&buf), nil)
	raw := w.key.Sign(t, claims())
	if _, err := a.Authenticate(context.Background(), request(), authn.Credentials{Token: raw}, audit.InterfaceGateway); !errors.Is(err, authn.ErrNotForClickHouse) {
		t.Fatalf("gateway before AdmitToClickHouse: %v", err)
	}
	if _, err := a.Authenticate(context.Background(), request(), authn.Credentials{Token: raw}, audit.InterfaceMCP); err != nil {
		t.Fatalf("MCP: %v", err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d records, want 2:\n%s", n, buf.String())
	}
}

func TestStatusAndChallenge(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		status    int
		challenge string
	}{
		{"no credentials", authn.ErrNoCredentials, 401, `Bearer realm="clickgate"`},
		{"wrapped no credentials", fmt.Errorf("gateway: %w", authn.ErrNoCredentials), 401, `Bearer realm="clickgate"`},
		{"denied", fmt.Errorf("%w: e-mail domain", identity.ErrDenied), 403, `Bearer realm="clickgate", error="invalid_token", error_description="denied: e-mail domain"`},
		{"user mismatch", fmt.Errorf("%w: someone else", authn.ErrUserMismatch), 403, `Bearer realm="clickgate", error="invalid_token", error_description="user mismatch: someone else"`},
		{"not for ClickHouse", fmt.Errorf("token: corp: %w", authn.ErrNotForClickHouse), 401, `Bearer realm="clickgate", error="invalid_token", error_description="token: corp: the token's audience is not for ClickHouse"`},
		{"quotes, backslashes, control and non-ASCII", errors.New("iss \"é\\\x01\r\n\" bad"), 401, `Bearer realm="clickgate", error="invalid_token", error_description="iss ''''''' bad"`},
		{"context cancelled", context.Canceled, 401, `Bearer realm="clickgate", error="invalid_token", error_description="context canceled"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := authn.Status(tc.err); got != tc.status {
				t.Errorf("status %d, want %d", got, tc.status)
			}
			if got := authn.Challenge(tc.err); got != tc.challenge {
				t.Errorf("challenge\n got %s\nwant %s", got, tc.challenge)
			}
		})
	}
}

func TestHeaderSafe(t *testing.T) {
	for in, want := range map[string]string{
		"plain text: ok (1/2)": "plain text: ok (1/2)",
		`say "hi"`:             "say 'hi'",
		`back\slash`:           "back'slash",
		"tab\tnew\nline":       "tab'new'line",
		"ümlaut":               "'mlaut",
		"\x7f":                 "'",
		"":                     "",
	} {
		if got := authn.HeaderSafe(in); got != want {
			t.Errorf("HeaderSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFromRequest(t *testing.T) {
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name   string
		header []string // Authorization values; nil: none
		want   authn.Credentials
		err    string // empty: no error
		noCred bool   // the error is ErrNoCredentials
	}{
		{name: "bearer", header: []string{"Bearer tok.en.x"}, want: authn.Credentials{Token: "tok.en.x"}},
		{name: "bearer any case", header: []string{"bEaReR tok"}, want: authn.Credentials{Token: "tok"}},
		{name: "bearer with spaces around", header: []string{"Bearer   tok  "}, want: authn.Credentials{Token: "tok"}},
		{name: "basic user and token", header: []string{basic("alice@example.com:tok")}, want: authn.Credentials{User: "alice@example.com", Token: "tok"}},
		{name: "basic token only", header: []string{basic(":tok")}, want: authn.Credentials{Token: "tok"}},
		{name: "basic password with a colon", header: []string{basic("alice:to:k")}, want: authn.Credentials{User: "alice", Token: "to:k"}},
		{name: "basic lower case", header: []string{"basic " + base64.StdEncoding.EncodeToString([]byte("a:tok"))}, want: authn.Credentials{User: "a", Token: "tok"}},
		{name: "none", err: "no credentials", noCred: true},
		{name: "empty header", header: []string{""}, err: "no credentials", noCred: true},
		{name: "bearer without token", header: []string{"Bearer "}, err: "no credentials", noCred: true},
		{name: "bearer alone", header: []string{"Bearer"}, err: "no credentials", noCred: true},
		{name: "basic without password", header: []string{basic("alice:")}, err: "no credentials", noCred: true},
		{name: "basic not base64", header: []string{"Basic !!!"}, err: "malformed Basic credentials"},
		{name: "basic without colon", header: []string{basic("alice")}, err: "malformed Basic credentials"},
		{name: "basic alone", header: []string{"Basic"}, err: "malformed Basic credentials"},
		{name: "digest", header: []string{`Digest username="a"`}, err: "unsupported Authorization scheme"},
		{name: "token without scheme", header: []string{"eyJhbGciOi.x.y"}, err: "unsupported Authorization scheme"},
		{name: "negotiate", header: []string{"Negotiate abc"}, err: "unsupported Authorization scheme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, h := range tc.header {
				r.Header.Add("Authorization", h)
			}
			got, err := authn.FromRequest(r)
			if tc.err == "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || errors.Is(err, authn.ErrNoCredentials) != tc.noCred {
				t.Fatalf("error %v, want one saying %q (no credentials: %v)", err, tc.err, tc.noCred)
			}
			if !strings.Contains(authn.Challenge(err), `Bearer realm="clickgate"`) || authn.Status(err) != http.StatusUnauthorized {
				t.Errorf("challenge %s, status %d", authn.Challenge(err), authn.Status(err))
			}
		})
	}
}

func TestSplitAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port int
	}{
		{"192.0.2.7:40123", "192.0.2.7", 40123},
		{"[2001:db8::1]:443", "2001:db8::1", 443},
		{"stdio", "stdio", 0},
		{"", "", 0},
		{"host:notaport", "host", 0},
	} {
		host, port := authn.SplitAddr(tc.in)
		if host != tc.host || port != tc.port {
			t.Errorf("SplitAddr(%q) = %q, %d; want %q, %d", tc.in, host, port, tc.host, tc.port)
		}
	}
}
