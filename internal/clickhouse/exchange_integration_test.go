package clickhouse_test

// Exchange mode against a real OpenID provider (zitadel/oidc op with its
// example storage): a person logs in to clickgate (authorization code flow),
// clickgate verifies the token with its oidc processor and trades it at the
// discovered token endpoint (RFC 8693) for a token meant for ClickHouse.

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/testkit"
	"github.com/clickgate/clickgate/internal/token"
)

const (
	exClickgate = "clickgate"  // logs people in (aud clickgate) and may exchange
	exGrafana   = "grafana"    // logs people in, may not exchange
	exAudience  = "clickhouse" // the only audience the provider exchanges for
	exRedirect  = "http://127.0.0.1/callback"
	exTokenPath = "/oauth/token"
	// Logins' access tokens last an hour, exchanged ones two minutes.
	exCallerLifetime    = time.Hour
	exExchangedLifetime = 2 * time.Minute
)

var exSecrets = map[string]string{exClickgate: "clickgate-secret", exGrafana: "grafana-secret"}

// exClient is an example-storage web client (client_secret_basic) that
// issues JWT access tokens and has only the test's grants.
type exClient struct {
	op.Client
	grants []oidc.GrantType
}

func (c exClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c exClient) GrantTypes() []oidc.GrantType        { return c.grants }

// exStorage is the example storage (users, tokens, signing key) with an
// exchange policy in front of the example's own.
type exStorage struct {
	*storage.Storage
	users  storage.UserStore
	grants map[string][]oidc.GrantType
}

func (s *exStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return exClient{c, s.grants[id]}, nil
}

func (s *exStorage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	id, _, err := s.Storage.CreateAccessToken(ctx, req)
	if _, ok := req.(op.TokenExchangeRequest); ok {
		return id, time.Now().Add(exExchangedLifetime), err
	}
	return id, time.Now().Add(exCallerLifetime), err
}

// ValidateTokenExchangeRequest is the IdP's exchange policy (op itself checks
// only the client's secret): clients granted token exchange, audience
// clickhouse, active tokens issued to that client, then the example's rule.
func (s *exStorage) ValidateTokenExchangeRequest(ctx context.Context, req op.TokenExchangeRequest) error {
	client := req.GetClientID()
	if !slices.Contains(s.grants[client], oidc.GrantTypeTokenExchange) {
		return oidc.ErrUnauthorizedClient().WithDescription("client may not exchange tokens")
	}
	if !slices.Equal(req.GetAudience(), []string{exAudience}) {
		return oidc.ErrInvalidTarget().WithDescription("unknown audience")
	}
	var active oidc.IntrospectionResponse
	err := s.Storage.SetIntrospectionFromToken(ctx, &active, req.GetExchangeSubjectTokenIDOrToken(), req.GetExchangeSubject(), client)
	if err != nil || s.users.GetUserByID(req.GetExchangeSubject()) == nil {
		return oidc.ErrInvalidGrant().WithDescription("subject_token is not active for this client")
	}
	if err := s.Storage.ValidateTokenExchangeRequest(ctx, req); err != nil {
		return oidc.ErrAccessDenied().WithDescription("%s", err.Error())
	}
	return nil
}

type exIdP struct {
	t         *testing.T
	issuer    string
	store     *exStorage
	provider  *op.Provider
	exchanges atomic.Int32 // token exchange requests received
	down      atomic.Bool  // the token endpoint answers 503
}

func newExIdP(t *testing.T) *exIdP {
	t.Helper()
	p := &exIdP{t: t}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.issuer = srv.URL
	// The example's users: id1 (IsAdmin, so the example lets its tokens be
	// exchanged) and id2 (not).
	users := storage.NewUserStore(p.issuer)
	clients := map[string]*storage.Client{}
	for id, secret := range exSecrets {
		clients[id] = storage.WebClient(id, secret, exRedirect)
	}
	p.store = &exStorage{Storage: storage.NewStorageWithClients(users, clients), users: users,
		grants: map[string][]oidc.GrantType{
			exClickgate: {oidc.GrantTypeCode, oidc.GrantTypeTokenExchange},
			exGrafana:   {oidc.GrantTypeCode},
		}}
	cfg := &op.Config{CryptoKey: sha256.Sum256([]byte("exchange test")), CryptoKeyId: "c1", CodeMethodS256: true}
	var err error
	p.provider, err = op.NewProvider(cfg, p.store, op.StaticIssuer(p.issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *exIdP) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == exTokenPath && r.FormValue("grant_type") == string(oidc.GrantTypeTokenExchange) {
		if p.exchanges.Add(1); p.down.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
	}
	if strings.HasPrefix(r.URL.Path, "/login") { // the login page: check the password, go on to the callback
		id := r.FormValue("authRequestID")
		if err := p.store.CheckUsernamePassword(r.FormValue("username"), r.FormValue("password"), id); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		http.Redirect(w, r, op.AuthCallbackURL(p.provider)(op.ContextWithIssuer(r.Context(), p.issuer), id), http.StatusFound)
		return
	}
	p.provider.ServeHTTP(w, r)
}

func (p *exIdP) post(path, client string, form url.Values) *http.Response {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.issuer+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, exSecrets[client])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("POST %s: HTTP %d", path, resp.StatusCode)
	}
	return resp
}

// login runs the authorization code flow for the example user with id at
// client and returns the access token.
func (p *exIdP) login(client, id string) string {
	p.t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next := func(resp *http.Response, err error) *url.URL {
		p.t.Helper()
		if err != nil {
			p.t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			p.t.Fatalf("%s: HTTP %d, want a redirect", resp.Request.URL.Path, resp.StatusCode)
		}
		return loc
	}
	loginPage := next(c.Get(p.issuer + "/authorize?" + url.Values{"client_id": {client}, "redirect_uri": {exRedirect},
		"response_type": {"code"}, "scope": {"openid email"}, "state": {"s"}}.Encode()))
	callback := next(c.PostForm(loginPage.String(), url.Values{"username": {p.store.users.GetUserByID(id).Username}, "password": {"verysecure"}}))
	code := next(c.Get(callback.String())).Query().Get("code")
	resp := p.post(exTokenPath, client, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {exRedirect}})
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		p.t.Fatalf("code exchange: %v", err)
	}
	return tok.AccessToken
}

// newExGateway wires clickgate as server.go does: an oidc processor "corp"
// (client clickgate) whose discovered token endpoint exchange mode uses.
// clk is clickgate's clock: the real time (the provider's) plus a skip.
func newExGateway(t *testing.T, idp *exIdP, clk *testkit.Clock, client, secret, audience string) (*token.Verifier, clickhouse.Mode) {
	t.Helper()
	pc := &token.Config{Type: token.TypeOIDC, Issuer: idp.issuer, Audiences: []string{client},
		ClientID: client, ClientSecret: secret}
	pc.ApplyDefaults()
	p, err := token.New("corp", pc, token.Options{HTTPClient: &http.Client{Timeout: 5 * time.Second}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	v := token.NewVerifier([]token.Processor{p}, map[string]time.Duration{"corp": time.Minute}, nil, clk.Now)
	up, err := clickhouse.New(&config.ClickHouse{URL: "http://127.0.0.1:1/", Mode: config.ModeExchange, Audience: audience}, clickhouse.Deps{
		HTTP: &http.Client{Timeout: 5 * time.Second}, Now: clk.Now,
		TokenEndpoint: func(ctx context.Context, processor string) (clickhouse.TokenEndpoint, error) {
			e, err := v.TokenEndpoint(ctx, processor)
			return clickhouse.TokenEndpoint(e), err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v, up.Mode
}

// caller is who the gateway would pass to the mode for raw (not verified:
// refusals must come from the provider).
func exCaller(raw string, expiry time.Time) *clickhouse.Caller {
	return &clickhouse.Caller{Token: raw, Identity: &identity.Identity{Processor: "corp"},
		Principal: &identity.Principal{User: "someone", Processor: "corp", Expiry: expiry}}
}

func TestIntegrationExchange(t *testing.T) {
	ctx := context.Background()
	idp := newExIdP(t)
	clk := testkit.RealClock()
	verifier, mode := newExGateway(t, idp, clk, exClickgate, exSecrets[exClickgate], exAudience)
	raw := idp.login(exClickgate, "id1")

	id, err := verifier.Verify(ctx, raw)
	if err != nil {
		t.Fatalf("clickgate refuses id1's token: %v", err)
	}
	c := &clickhouse.Caller{Token: raw, Identity: id,
		Principal: &identity.Principal{User: id.Username, Processor: "corp", Subject: id.Subject, Expiry: id.Expiry}}

	// A processor that accepts only tokens meant for ClickHouse (on the
	// provider's time: clk runs ahead below).
	chCfg := &token.Config{Type: token.TypeOIDC, Issuer: idp.issuer, Audiences: []string{exAudience}}
	chCfg.ApplyDefaults()
	chProc, _ := token.New("ch", chCfg, token.Options{})
	verifyCH := token.NewVerifier([]token.Processor{chProc}, nil, nil, time.Now).Verify
	if _, err := verifyCH(ctx, raw); token.ReasonOf(err) != token.ReasonAudience {
		t.Fatalf("the caller's own token for ClickHouse: %v, want %s", err, token.ReasonAudience)
	}

	// up returns the bearer token mode sends upstream for c, after
	// exchanges requests to the token endpoint in all.
	up := func(c *clickhouse.Caller, exchanges int32) string {
		t.Helper()
		u, err := mode.Upstream(ctx, c)
		if err != nil {
			t.Fatalf("Upstream: %v", err)
		}
		tok, ok := strings.CutPrefix(u.Header.Get("Authorization"), "Bearer ")
		if !ok || len(tok) < 20 || tok == c.Token {
			t.Fatalf("Authorization %q, want Bearer and a token other than the caller's", u.Header.Get("Authorization"))
		}
		if n := idp.exchanges.Load(); n != exchanges {
			t.Fatalf("%d exchanges, want %d", n, exchanges)
		}
		return tok
	}
	first := up(c, 1)
	if e, _ := verifier.TokenEndpoint(ctx, "corp"); e.URL != idp.issuer+exTokenPath {
		t.Fatalf("clickgate's token endpoint %q, want the discovered %q", e.URL, idp.issuer+exTokenPath)
	}
	chID, err := verifyCH(ctx, first)
	if err != nil {
		t.Fatalf("the exchanged token is not a valid ClickHouse token of the provider: %v", err)
	}
	if !slices.Equal(chID.Audience, []string{exAudience}) || chID.Subject != id.Subject || chID.Subject != "id1" {
		t.Fatalf("exchanged token: aud %v sub %q, want aud [%s] sub %q", chID.Audience, chID.Subject, exAudience, id.Subject)
	}
	if got := chID.Claims["client_id"]; got != exClickgate {
		t.Fatalf("exchanged token's client_id %v, want %s", got, exClickgate)
	}

	// Cached: the same caller token makes no new request, until 30 s
	// before the exchanged token expires.
	for range 3 {
		if up(c, 1) != first {
			t.Fatal("a second call for the same token returned another token")
		}
	}
	clk.Advance(exExchangedLifetime - time.Minute)
	if up(c, 1) != first {
		t.Fatal("a minute before expiry, the cached token is not used")
	}
	clk.Advance(time.Minute)
	second := up(c, 2)
	if chID, err := verifyCH(ctx, second); err != nil || second == first || chID.Subject != "id1" {
		t.Fatalf("the renewed token (new: %v): %v", second != first, err)
	}
	if up(c, 2) != second {
		t.Fatal("the renewed token is not cached")
	}

	// Another token (id1 logged in again) is exchanged on its own.
	other := idp.login(exClickgate, "id1")
	if tok := up(exCaller(other, time.Now().Add(time.Hour)), 3); tok == first || tok == second {
		t.Fatal("another caller token got a cached exchanged token")
	}
}

func TestIntegrationExchangeRefused(t *testing.T) {
	ctx := context.Background()
	idp := newExIdP(t)
	id1Tok := idp.login(exClickgate, "id1")
	id2Tok := idp.login(exClickgate, "id2")
	id1AtGrafana := idp.login(exGrafana, "id1")
	revoked := idp.login(exClickgate, "id1")
	idp.post("/revoke", exClickgate, url.Values{"token": {revoked}, "token_type_hint": {"access_token"}}).Body.Close()

	tests := []struct {
		name, client, secret, audience, raw string
		down                                bool
		wantCode                            string // the OAuth error the message names
		wantStatus                          int    // 403: the caller's token; 502: clickgate's side or the IdP
	}{
		{name: "wrong client secret", secret: "not-the-secret", raw: id1Tok, wantCode: "invalid_client", wantStatus: 502},
		{name: "client not allowed to exchange", client: exGrafana, raw: id1AtGrafana, wantCode: "unauthorized_client", wantStatus: 502},
		{name: "garbage subject token", raw: "eyJhbGciOiJSUzI1NiJ9.garbage.garbage", wantCode: "invalid_request", wantStatus: 403},
		{name: "revoked subject token", raw: revoked, wantCode: "invalid_grant", wantStatus: 403},
		{name: "token of another client", raw: id1AtGrafana, wantCode: "invalid_grant", wantStatus: 403},
		{name: "user the IdP will not exchange for", raw: id2Tok, wantCode: "access_denied", wantStatus: 403},
		{name: "audience the IdP does not know", audience: "warehouse", raw: id1Tok, wantCode: "invalid_target", wantStatus: 502},
		{name: "IdP down", raw: id1Tok, down: true, wantStatus: 502},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := cmp.Or(tc.client, exClickgate)
			secret := cmp.Or(tc.secret, exSecrets[client])
			_, mode := newExGateway(t, idp, testkit.RealClock(), client, secret, cmp.Or(tc.audience, exAudience))
			idp.down.Store(tc.down)
			defer idp.down.Store(false)

			before := idp.exchanges.Load()
			u, err := mode.Upstream(ctx, exCaller(tc.raw, time.Now().Add(time.Hour)))
			var ce *clickhouse.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Upstream = %v, %v; want a *clickhouse.Error", u, err)
			}
			t.Logf("HTTP %d: %s", ce.Status, ce.Msg)
			if ce.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", ce.Status, tc.wantStatus, ce.Msg)
			}
			if tc.wantCode != "" && !strings.Contains(ce.Msg, `"`+tc.wantCode+`"`) {
				t.Fatalf("message %q, want it to name the IdP's error %q", ce.Msg, tc.wantCode)
			}
			if strings.Contains(ce.Msg, tc.raw) || strings.Contains(ce.Msg, secret) {
				t.Fatalf("the message %q echoes the caller's token or the client secret", ce.Msg)
			}
			if n := idp.exchanges.Load() - before; n != 1 {
				t.Fatalf("%d exchange requests, want 1", n)
			}
		})
	}
}
