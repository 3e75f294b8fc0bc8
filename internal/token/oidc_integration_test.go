package token_test

// Integration tests of the oidc and opaque token processors against a real
// OpenID provider: github.com/zitadel/oidc/v3/pkg/op (a certified OP
// library) with its example storage, served by httptest on 127.0.0.1.
// Tokens come from real grants (authorization code + PKCE for people,
// client credentials for services); clickgate discovers the provider,
// fetches its JWKS and calls its userinfo and introspection endpoints exactly
// as it would in production. A counting wrapper around the provider counts
// (and can fail) every request, and a controlled clock moves clickgate's
// time without sleeping.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/testkit"
	"github.com/clickgate/clickgate/internal/token"
)

// Paths the zitadel provider serves (op.DefaultEndpoints).
const (
	itPathDiscovery     = "/.well-known/openid-configuration"
	itPathKeys          = "/keys"
	itPathUserinfo      = "/userinfo"
	itPathIntrospection = "/oauth/introspect"
	itPathToken         = "/oauth/token"
	itPathRevocation    = "/revoke"
	itRedirectURI       = "http://127.0.0.1/callback"
)

// Clients registered at every test provider.
const (
	// itClientJWT logs people in and issues JWT access tokens (aud = itClientJWT).
	itClientJWT = "clickhouse"
	// itClientOpaque logs people in and issues opaque access tokens; it is
	// also the client clickgate introspects as.
	itClientOpaque = "ch-opaque"
	// itClientOther is another application with opaque access tokens.
	itClientOther = "other-app"
	// itClientBot is a service account (client credentials, JWT, aud clickhouse).
	itClientBot = "etl-bot"
)

var itSecrets = map[string]string{
	itClientJWT:    "jwt-secret",
	itClientOpaque: "opaque-secret",
	itClientOther:  "other-secret",
	itClientBot:    "bot-secret",
}

// ---------------------------------------------------------------------------
// The provider: example storage, wrapped.

// itKey is a signing key of the test provider.
type itKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *itKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *itKey) Key() any                                    { return k.key }
func (k *itKey) ID() string                                  { return k.id }

// itPublicKey is how the provider publishes an itKey in its JWKS.
type itPublicKey struct{ k *itKey }

func (p itPublicKey) ID() string                         { return p.k.id }
func (p itPublicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p itPublicKey) Use() string                        { return "sig" }
func (p itPublicKey) Key() any                           { return &p.k.key.PublicKey }

func itNewKey(t testing.TB, id string) *itKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &itKey{id: id, key: k}
}

// itClient is an op.Client whose access token type and grants are chosen
// by the test (the example storage's clients are fixed to opaque tokens).
type itClient struct {
	id              string
	accessTokenType op.AccessTokenType
	grants          []oidc.GrantType
	// For client credentials: the token's audience and the service's groups.
	audience []string
	groups   []string
}

func (c *itClient) GetID() string                       { return c.id }
func (c *itClient) RedirectURIs() []string              { return []string{itRedirectURI} }
func (c *itClient) PostLogoutRedirectURIs() []string    { return nil }
func (c *itClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *itClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *itClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *itClient) GrantTypes() []oidc.GrantType         { return c.grants }
func (c *itClient) LoginURL(id string) string            { return "/login?authRequestID=" + url.QueryEscape(id) }
func (c *itClient) AccessTokenType() op.AccessTokenType  { return c.accessTokenType }
func (c *itClient) IDTokenLifetime() time.Duration       { return time.Hour }
func (c *itClient) DevMode() bool                        { return false }
func (c *itClient) IsScopeAllowed(string) bool           { return false }
func (c *itClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *itClient) ClockSkew() time.Duration             { return 0 }
func (c *itClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *itClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// itUsers is the provider's user directory (storage.UserStore).
type itUsers struct{ users []*storage.User }

func (u itUsers) GetUserByID(id string) *storage.User {
	for _, x := range u.users {
		if x.ID == id {
			return x
		}
	}
	return nil
}

func (u itUsers) GetUserByUsername(name string) *storage.User {
	for _, x := range u.users {
		if x.Username == name {
			return x
		}
	}
	return nil
}

func (u itUsers) ExampleClientID() string { return "unused-service" }

// itGroups are the IdP's group memberships, asserted as a "groups" claim
// (as Keycloak's group mapper does) in JWT access tokens, userinfo and
// introspection.
var itGroups = map[string][]string{
	"u-alice": {"ch-analysts", "staff"},
	"u-bob":   {"ch-admins"},
}

// itStorage is the example storage with the test's clients, rotatable
// signing keys, a groups claim and an audience in introspection answers.
type itStorage struct {
	*storage.Storage
	issuer string
	users  itUsers

	mu        sync.Mutex
	clients   map[string]*itClient
	signing   *itKey
	published []*itKey
	// jwtLifetime, when set, replaces the example's 5 minute access token
	// lifetime (it only shows in JWT access tokens' exp).
	jwtLifetime time.Duration
}

func (s *itStorage) client(id string) (*itClient, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	return c, ok
}

func (s *itStorage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if c, ok := s.client(id); ok {
		return c, nil
	}
	return nil, errors.New("client not found")
}

func (s *itStorage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if _, ok := s.client(id); ok && itSecrets[id] == secret {
		return nil
	}
	return errors.New("invalid client_id or client_secret")
}

func (s *itStorage) ClientCredentials(_ context.Context, id, secret string) (op.Client, error) {
	c, ok := s.client(id)
	if !ok || itSecrets[id] != secret || !slices.Contains(c.grants, oidc.GrantTypeClientCredentials) {
		return nil, errors.New("wrong service user or password")
	}
	return c, nil
}

func (s *itStorage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	c, ok := s.client(id)
	if !ok {
		return nil, errors.New("wrong service user")
	}
	return &oidc.JWTTokenRequest{Subject: c.id, Audience: c.audience, Scopes: scopes}, nil
}

func (s *itStorage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	id, exp, err := s.Storage.CreateAccessToken(ctx, req)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.jwtLifetime > 0 {
		exp = time.Now().Add(s.jwtLifetime)
	}
	return id, exp, err
}

func (s *itStorage) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	claims, err := s.Storage.GetPrivateClaimsFromScopes(ctx, userID, clientID, scopes)
	if err != nil {
		return nil, err
	}
	if claims == nil {
		claims = map[string]any{}
	}
	if c, ok := s.client(userID); ok && len(c.groups) > 0 {
		claims["groups"] = c.groups
	}
	if u := s.users.GetUserByID(userID); u != nil {
		claims["email"] = u.Email
		claims["email_verified"] = u.EmailVerified
	}
	if g, ok := itGroups[userID]; ok {
		claims["groups"] = g
	}
	return claims, nil
}

func (s *itStorage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	if g, ok := itGroups[subject]; ok {
		info.AppendClaims("groups", g)
	}
	return nil
}

func (s *itStorage) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	if err := s.Storage.SetIntrospectionFromToken(ctx, resp, tokenID, subject, clientID); err != nil {
		return err
	}
	// The example storage answers only when the caller is in the token's
	// audience, but leaves aud and iss out; real IdPs send both.
	resp.Audience = oidc.Audience{clientID}
	resp.Issuer = s.issuer
	resp.TokenType = oidc.BearerToken
	if g, ok := itGroups[subject]; ok {
		if resp.Claims == nil {
			resp.Claims = map[string]any{}
		}
		resp.Claims["groups"] = g
	}
	return nil
}

func (s *itStorage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signing, nil
}

func (s *itStorage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *itStorage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]op.Key, len(s.published))
	for i, k := range s.published {
		keys[i] = itPublicKey{k}
	}
	return keys, nil
}

// ---------------------------------------------------------------------------
// The server around it: counts and can fail requests.

type itOutage int

const (
	itUp   itOutage = iota
	it503           // answer 503 Service Unavailable
	itDrop          // close the connection without an answer
	itHang          // never answer (until the client hangs up)
)

type itIdP struct {
	t        *testing.T
	srv      *httptest.Server
	issuer   string
	store    *itStorage
	provider *op.Provider

	mu          sync.Mutex
	hits        map[string]int
	outage      itOutage
	outagePaths []string // empty: every path
	delay       map[string]time.Duration
}

func newITIdP(t *testing.T) *itIdP {
	t.Helper()
	p := &itIdP{t: t, hits: map[string]int{}, delay: map[string]time.Duration{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	p.issuer = p.srv.URL

	users := itUsers{users: []*storage.User{
		{ID: "u-alice", Username: "alice", Password: "alice-pw", FirstName: "Alice", LastName: "Liddell", Email: "alice@example.com", EmailVerified: true},
		{ID: "u-bob", Username: "bob", Password: "bob-pw", FirstName: "Bob", LastName: "Builder", Email: "bob@example.com", EmailVerified: false},
	}}
	key := itNewKey(t, "key-1")
	p.store = &itStorage{
		Storage: storage.NewStorageWithClients(users, map[string]*storage.Client{}),
		issuer:  p.issuer,
		users:   users,
		clients: map[string]*itClient{
			itClientJWT: {id: itClientJWT, accessTokenType: op.AccessTokenTypeJWT,
				grants: []oidc.GrantType{oidc.GrantTypeCode}},
			itClientOpaque: {id: itClientOpaque, accessTokenType: op.AccessTokenTypeBearer,
				grants: []oidc.GrantType{oidc.GrantTypeCode}},
			itClientOther: {id: itClientOther, accessTokenType: op.AccessTokenTypeBearer,
				grants: []oidc.GrantType{oidc.GrantTypeCode}},
			itClientBot: {id: itClientBot, accessTokenType: op.AccessTokenTypeJWT,
				grants:   []oidc.GrantType{oidc.GrantTypeClientCredentials},
				audience: []string{"clickhouse"}, groups: []string{"ch-etl"}},
		},
		signing:   key,
		published: []*itKey{key},
	}

	cfg := &op.Config{
		CryptoKey:      sha256.Sum256([]byte("clickgate integration test " + p.issuer)),
		CryptoKeyId:    "crypto-1",
		CodeMethodS256: true,
		AuthMethodPost: true,
	}
	provider, err := op.NewProvider(cfg, p.store, op.StaticIssuer(p.issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	p.provider = provider
	return p
}

func (p *itIdP) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.hits[r.URL.Path]++
	down := p.outage != itUp && (len(p.outagePaths) == 0 || slices.Contains(p.outagePaths, r.URL.Path))
	mode := p.outage
	delay := p.delay[r.URL.Path]
	p.mu.Unlock()

	if down {
		if mode == itHang {
			<-r.Context().Done()
			return
		}
		if mode == itDrop {
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				c.Close()
				return
			}
		}
		http.Error(w, "identity provider is down for maintenance", http.StatusServiceUnavailable)
		return
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if r.URL.Path == "/login" {
		p.login(w, r)
		return
	}
	p.provider.ServeHTTP(w, r)
}

// login is the provider's login page: it checks the password (the example
// storage's CheckUsernamePassword) and sends the browser to the OP's
// authorize callback, which issues the code.
func (p *itIdP) login(w http.ResponseWriter, r *http.Request) {
	id := r.FormValue("authRequestID")
	if err := p.store.CheckUsernamePassword(r.FormValue("username"), r.FormValue("password"), id); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	ctx := op.ContextWithIssuer(r.Context(), p.issuer)
	http.Redirect(w, r, op.AuthCallbackURL(p.provider)(ctx, id), http.StatusFound)
}

func (p *itIdP) count(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[path]
}

func (p *itIdP) setOutage(mode itOutage, paths ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outage, p.outagePaths = mode, paths
}

func (p *itIdP) setDelay(path string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay[path] = d
}

// rotate makes next the signing key; publish is the new JWKS.
func (p *itIdP) rotate(next *itKey, publish ...*itKey) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.signing, p.store.published = next, publish
}

func (p *itIdP) signingKey() *itKey {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	return p.store.signing
}

func (p *itIdP) setJWTLifetime(d time.Duration) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.jwtLifetime = d
}

// discovery reads the provider's metadata as any client would.
func (p *itIdP) discovery() *oidc.DiscoveryConfiguration {
	p.t.Helper()
	resp, err := http.Get(p.issuer + itPathDiscovery)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var d oidc.DiscoveryConfiguration
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		p.t.Fatal(err)
	}
	return &d
}

type itTokens struct {
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// tokenRequest posts a grant to the token endpoint with client_secret_basic.
func (p *itIdP) tokenRequest(client string, form url.Values) *itTokens {
	p.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.issuer+itPathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, itSecrets[client])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok itTokens
	if resp.StatusCode != http.StatusOK {
		var e map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&e)
		p.t.Fatalf("token endpoint: HTTP %d: %v", resp.StatusCode, e)
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		p.t.Fatal(err)
	}
	if tok.AccessToken == "" {
		p.t.Fatal("token endpoint answered without an access_token")
	}
	return &tok
}

// clientCredentials runs the client credentials grant.
func (p *itIdP) clientCredentials(client string) *itTokens {
	p.t.Helper()
	return p.tokenRequest(client, url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}})
}

// loginAs runs the authorization code flow with PKCE for a person, the way a
// browser and an application would: /authorize, the login page, the
// authorize callback, then the code exchange at the token endpoint.
func (p *itIdP) loginAs(client, username, password string) *itTokens {
	p.t.Helper()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next := func(resp *http.Response, err error) *url.URL {
		p.t.Helper()
		if err != nil {
			p.t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
			p.t.Fatalf("%s %s: HTTP %d, want a redirect", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode)
		}
		loc, err := resp.Location()
		if err != nil {
			p.t.Fatal(err)
		}
		return loc
	}

	verifier := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("verifier-%d-%s-%s", time.Now().UnixNano(), client, username)))
	challenge := sha256.Sum256([]byte(verifier))
	authorize := p.issuer + "/authorize?" + url.Values{
		"client_id":             {client},
		"redirect_uri":          {itRedirectURI},
		"response_type":         {"code"},
		"scope":                 {"openid email profile"},
		"state":                 {"st-1"},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
	}.Encode()
	loginPage := next(noRedirect.Get(authorize))
	if loginPage.Path != "/login" {
		p.t.Fatalf("authorize sent the browser to %s, want the login page", loginPage)
	}
	callback := next(noRedirect.PostForm(loginPage.String(), url.Values{"username": {username}, "password": {password}}))
	app := next(noRedirect.Get(callback.String()))
	code := app.Query().Get("code")
	if code == "" || app.Query().Get("state") != "st-1" {
		p.t.Fatalf("authorize callback redirected to %s, want the app with code and state", app)
	}
	return p.tokenRequest(client, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {itRedirectURI},
		"code_verifier": {verifier},
	})
}

// revoke revokes an access token at the provider's revocation endpoint.
func (p *itIdP) revoke(client, accessToken string) {
	p.t.Helper()
	form := url.Values{"token": {accessToken}, "token_type_hint": {"access_token"}}
	req, _ := http.NewRequest(http.MethodPost, p.discovery().RevocationEndpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, itSecrets[client])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("revocation: HTTP %d", resp.StatusCode)
	}
}

// ---------------------------------------------------------------------------
// clickgate's side. Its clock is testkit.NewClock(time.Now()): it stands
// still where the test moves it, starting at the real time because the
// provider stamps tokens with the real time.

type itReadier interface {
	Ready(ctx context.Context) error
}

// itProcessor builds a processor named "corp" the way production code does.
func itProcessor(t *testing.T, cfg *token.Config, clk *testkit.Clock) token.Processor {
	t.Helper()
	cfg.ApplyDefaults()
	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	p, err := token.New("corp", cfg, token.Options{
		HTTPClient: &http.Client{Transport: transport, Timeout: 5 * time.Second},
		Now:        clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func itVerifier(p token.Processor, now func() time.Time) *token.Verifier {
	return token.NewVerifier([]token.Processor{p}, map[string]time.Duration{"corp": time.Minute}, nil, now)
}

// itVerifyDirect asks the processor itself, bypassing the Verifier's cache.
func itVerifyDirect(p token.Processor, raw string) (*identity.Identity, error) {
	t, err := token.Parse(raw)
	if err != nil {
		return nil, err
	}
	return p.Verify(context.Background(), t)
}

func itWantReason(t *testing.T, what string, err error, want token.Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: verified, want refusal %q", what, want)
	}
	if got := token.ReasonOf(err); got != want {
		t.Fatalf("%s: reason %q (%v), want %q", what, got, err, want)
	}
	if got, wantTemp := token.IsTemporary(err), want == token.ReasonUnavailable; got != wantTemp {
		t.Fatalf("%s: IsTemporary = %v, want %v (%v)", what, got, wantTemp, err)
	}
}

func itWantOK(t *testing.T, what string, id *identity.Identity, err error) *identity.Identity {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v (reason %s)", what, err, token.ReasonOf(err))
	}
	if id == nil {
		t.Fatalf("%s: nil identity without error", what)
	}
	return id
}

// itClaims reads a JWT's payload without verifying it (test expectations only).
func itClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("not a JWT: %v", err)
	}
	var c map[string]any
	if err := tok.UnsafeClaimsWithoutVerification(&c); err != nil {
		t.Fatal(err)
	}
	c["kid"] = tok.Headers[0].KeyID
	return c
}

func itExp(t *testing.T, raw string) time.Time {
	t.Helper()
	exp, ok := itClaims(t, raw)["exp"].(float64)
	if !ok {
		t.Fatal("token has no numeric exp")
	}
	return time.Unix(int64(exp), 0)
}

// itForge signs a token for issuer with a key the provider never
// published: an attacker's token, or one from a key clickgate cannot know.
func itForge(t *testing.T, key *itKey, issuer string, extra map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", key.id))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := map[string]any{
		"iss": issuer, "sub": "mallory", "aud": []string{"clickhouse"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
	for k, v := range extra {
		claims[k] = v
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func itRun(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

// ---------------------------------------------------------------------------
// 1. Discovery and JWKS.

func TestIntegrationOIDCDiscoveryAndJWKS(t *testing.T) {
	idp := newITIdP(t)
	other := newITIdP(t) // an independent provider: its own issuer and keys
	if idp.issuer == other.issuer {
		t.Fatal("the two providers share an issuer")
	}
	alice := idp.loginAs(itClientJWT, "alice", "alice-pw").AccessToken
	bot := idp.clientCredentials(itClientBot).AccessToken
	bob := idp.loginAs(itClientJWT, "bob", "bob-pw").AccessToken
	foreign := other.loginAs(itClientJWT, "alice", "alice-pw").AccessToken

	// A token whose payload was swapped for another valid token's payload.
	a, b := strings.Split(alice, "."), strings.Split(bob, ".")
	spliced := a[0] + "." + b[1] + "." + a[2]

	jwtConfig := func(audiences ...string) *token.Config {
		return &token.Config{
			Type: token.TypeOIDC, Issuer: idp.issuer, Audiences: audiences,
			UsernameClaim: "email", GroupsClaim: "groups",
		}
	}
	tests := []struct {
		name      string
		cfg       *token.Config
		raw       string
		wantUser  string
		wantSub   string
		wantGroup []string
		reason    token.Reason
	}{
		{name: "person via authorization code", cfg: jwtConfig("clickhouse"), raw: alice,
			wantUser: "alice@example.com", wantSub: "u-alice", wantGroup: []string{"ch-analysts", "staff"}},
		{name: "service via client credentials", cfg: &token.Config{Type: token.TypeOIDC, Issuer: idp.issuer, Audiences: []string{"clickhouse"}},
			raw: bot, wantUser: itClientBot, wantSub: itClientBot, wantGroup: []string{"ch-etl"}},
		{name: "one of several accepted audiences", cfg: jwtConfig("grafana", "clickhouse"), raw: alice,
			wantUser: "alice@example.com", wantSub: "u-alice", wantGroup: []string{"ch-analysts", "staff"}},
		{name: "wrong audience", cfg: jwtConfig("not-clickhouse"), raw: alice, reason: token.ReasonAudience},
		{name: "required claim holds", cfg: func() *token.Config {
			c := jwtConfig("clickhouse")
			c.RequiredClaims = map[string]any{"groups": "ch-analysts"}
			return c
		}(), raw: alice, wantUser: "alice@example.com", wantSub: "u-alice", wantGroup: []string{"ch-analysts", "staff"}},
		{name: "required claim missing", cfg: func() *token.Config {
			c := jwtConfig("clickhouse")
			c.RequiredClaims = map[string]any{"groups": "ch-analysts"}
			return c
		}(), raw: bob, reason: token.ReasonClaims},
		{name: "another provider's token", cfg: jwtConfig("clickhouse"), raw: foreign, reason: token.ReasonIssuer},
		{name: "payload swapped under a valid signature", cfg: jwtConfig("clickhouse"), raw: spliced, reason: token.ReasonSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := testkit.NewClock(time.Now())
			p := itProcessor(t, tc.cfg, clk)
			v := itVerifier(p, clk.Now)
			id, err := v.Verify(context.Background(), tc.raw)
			if tc.reason != "" {
				itWantReason(t, "Verify", err, tc.reason)
				if strings.Contains(err.Error(), tc.raw) {
					t.Fatal("the error message echoes the token")
				}
				return
			}
			id = itWantOK(t, "Verify", id, err)
			if id.Username != tc.wantUser || id.Subject != tc.wantSub || id.Processor != "corp" || id.Issuer != idp.issuer {
				t.Fatalf("identity %+v, want user %q sub %q issuer %q", id, tc.wantUser, tc.wantSub, idp.issuer)
			}
			if !slices.Equal(id.Groups, tc.wantGroup) {
				t.Fatalf("groups %v, want %v", id.Groups, tc.wantGroup)
			}
			if exp := itExp(t, tc.raw); !id.Expiry.Equal(exp) {
				t.Fatalf("expiry %s, want the token's exp %s", id.Expiry, exp)
			}
			if d := time.Until(id.Expiry); d < 4*time.Minute || d > 6*time.Minute {
				t.Fatalf("expiry %s is not the provider's 5 minute lifetime", id.Expiry)
			}
			if !slices.Contains(id.Audience, "clickhouse") {
				t.Fatalf("audience %v lacks clickhouse", id.Audience)
			}
			if err := p.(itReadier).Ready(context.Background()); err != nil {
				t.Fatalf("Ready after a verification: %v", err)
			}
		})
	}

	t.Run("a second provider's token is routed to no processor", func(t *testing.T) {
		clk := testkit.NewClock(time.Now())
		p := itProcessor(t, jwtConfig("clickhouse"), clk)
		tok, err := token.Parse(foreign)
		if err != nil {
			t.Fatal(err)
		}
		if p.Accepts(tok) {
			t.Fatalf("processor for %s accepts a token from %s", idp.issuer, other.issuer)
		}
		before := other.count(itPathDiscovery) + other.count(itPathKeys) + other.count(itPathUserinfo)
		_, err = itVerifier(p, clk.Now).Verify(context.Background(), foreign)
		itWantReason(t, "Verify", err, token.ReasonIssuer)
		if after := other.count(itPathDiscovery) + other.count(itPathKeys) + other.count(itPathUserinfo); after != before {
			t.Fatal("clickgate contacted the foreign provider")
		}
		if idp.count(itPathUserinfo) != 0 {
			t.Fatal("a foreign JWT was sent to the userinfo endpoint")
		}
	})

	t.Run("discovery and JWKS are fetched once", func(t *testing.T) {
		clk := testkit.NewClock(time.Now())
		p := itProcessor(t, jwtConfig("clickhouse"), clk)
		d0, k0 := idp.count(itPathDiscovery), idp.count(itPathKeys)
		for i := 0; i < 5; i++ {
			id, err := itVerifyDirect(p, alice)
			itWantOK(t, "direct", id, err)
		}
		if d, k := idp.count(itPathDiscovery)-d0, idp.count(itPathKeys)-k0; d != 1 || k != 1 {
			t.Fatalf("5 verifications made %d discovery and %d JWKS requests, want 1 and 1", d, k)
		}
	})

	t.Run("issuer must match discovery exactly", func(t *testing.T) {
		clk := testkit.NewClock(time.Now())
		p := itProcessor(t, &token.Config{Type: token.TypeOIDC, Issuer: idp.issuer + "/", Audiences: []string{"clickhouse"}}, clk)
		err := p.(itReadier).Ready(context.Background())
		if err == nil || token.ReasonOf(err) != token.ReasonUnavailable {
			t.Fatalf("Ready with issuer %q (provider says %q): %v, want idp_unavailable", idp.issuer+"/", idp.issuer, err)
		}
	})
}

// ---------------------------------------------------------------------------
// 2. Key rotation.

func TestIntegrationOIDCKeyRotation(t *testing.T) {
	idp := newITIdP(t)
	clk := testkit.NewClock(time.Now())
	p := itProcessor(t, &token.Config{Type: token.TypeOIDC, Issuer: idp.issuer, Audiences: []string{"clickhouse"}}, clk)
	jwksFetches := func() int { return idp.count(itPathKeys) }
	ok := func(what, raw string) {
		t.Helper()
		id, err := itVerifyDirect(p, raw)
		itWantOK(t, what, id, err)
	}
	refused := func(what, raw string) {
		t.Helper()
		_, err := itVerifyDirect(p, raw)
		itWantReason(t, what, err, token.ReasonUnknownKey)
	}
	wantFetches := func(when string, n int) {
		t.Helper()
		if got := jwksFetches(); got != n {
			t.Fatalf("%s: %d JWKS requests in all, want %d", when, got, n)
		}
	}

	oldKey := idp.signingKey()
	oldTok := idp.clientCredentials(itClientBot).AccessToken
	ok("token signed with the first key", oldTok)
	wantFetches("after the first verification", 1)

	// The provider rotates: it signs with a new key and publishes both.
	newKey := itNewKey(t, "key-2")
	idp.rotate(newKey, oldKey, newKey)
	newTok := idp.clientCredentials(itClientBot).AccessToken
	if o, n := itClaims(t, oldTok)["kid"], itClaims(t, newTok)["kid"]; o != "key-1" || n != "key-2" {
		t.Fatalf("token kids %v and %v, want key-1 and key-2", o, n)
	}

	// One second after the last fetch the unknown kid does not trigger a
	// refresh (at most one per 10 s).
	clk.Advance(time.Second)
	refused("new kid 1 s after a fetch", newTok)
	wantFetches("new kid 1 s after a fetch", 1)

	// Ten seconds on, the unknown kid refreshes the JWKS once.
	clk.Advance(10 * time.Second)
	ok("new kid 11 s after the first fetch", newTok)
	wantFetches("after the refresh for the new kid", 2)
	ok("old token while the old key is still published", oldTok)
	ok("new token again", newTok)
	wantFetches("known kids", 2)

	// Tokens with kids the provider never published: one refresh per 10 s.
	ghost := itNewKey(t, "ghost")
	forged := itForge(t, ghost, idp.issuer, nil)
	refused("unknown kid right after a refresh", forged)
	wantFetches("unknown kid right after a refresh", 2)
	clk.Advance(5 * time.Second)
	refused("unknown kid 5 s after a refresh", forged)
	wantFetches("unknown kid 5 s after a refresh", 2)
	clk.Advance(6 * time.Second)
	refused("unknown kid 11 s after a refresh", forged)
	wantFetches("unknown kid 11 s after a refresh", 3)
	for i := 0; i < 20; i++ {
		refused("repeated unknown kid", forged)
	}
	wantFetches("20 more unknown kids within 10 s", 3)

	// The provider retires the old key. A burst of 50 different unknown
	// kids at once, past the 10 s window, refreshes once, and from then on
	// tokens signed with the retired key are refused.
	idp.rotate(newKey, newKey)
	clk.Advance(11 * time.Second)
	// A slow JWKS answer keeps the refresh in flight while the burst arrives.
	idp.setDelay(itPathKeys, 100*time.Millisecond)
	var accepted atomic.Int32
	itRun(50, func(i int) {
		raw := itForge(t, &itKey{id: fmt.Sprintf("ghost-%d", i), key: ghost.key}, idp.issuer, nil)
		if _, err := itVerifyDirect(p, raw); err == nil || token.ReasonOf(err) != token.ReasonUnknownKey {
			accepted.Add(1)
		}
	})
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d of 50 forged tokens were not refused as unknown_key", n)
	}
	wantFetches("a burst of 50 unknown kids", 4)
	idp.setDelay(itPathKeys, 0)
	refused("token signed with the retired key", oldTok)
	ok("token signed with the current key", newTok)
	wantFetches("after the key was retired", 4)
}

// ---------------------------------------------------------------------------
// 3. The IdP goes down.

func TestIntegrationOIDCIdPDown(t *testing.T) {
	t.Run("known keys stay in use until max_key_staleness", func(t *testing.T) {
		idp := newITIdP(t)
		idp.setJWTLifetime(3 * time.Hour)
		raw := idp.clientCredentials(itClientBot).AccessToken
		clk := testkit.NewClock(time.Now())
		p := itProcessor(t, &token.Config{
			Type: token.TypeOIDC, Issuer: idp.issuer, Audiences: []string{"clickhouse"},
			MaxKeyStaleness: 2 * time.Hour,
		}, clk)
		id, err := itVerifyDirect(p, raw)
		itWantOK(t, "before the outage", id, err)
		if n := idp.count(itPathKeys); n != 1 {
			t.Fatalf("%d JWKS requests, want 1", n)
		}

		idp.setOutage(it503)
		steps := []struct {
			advance     time.Duration
			what        string
			wantFetches int
			reason      token.Reason
		}{
			{30 * time.Minute, "30 min: keys are fresh, the IdP is not asked", 1, ""},
			{31 * time.Minute, "61 min: keys are due, the refresh fails, the stale keys stay in use", 2, ""},
			{5 * time.Second, "61 min 5 s: no new attempt within 10 s", 2, ""},
			{time.Hour, "2 h 1 min: older than max_key_staleness, fail closed", 3, token.ReasonUnavailable},
		}
		for _, s := range steps {
			clk.Advance(s.advance)
			id, err := itVerifyDirect(p, raw)
			if s.reason == "" {
				itWantOK(t, s.what, id, err)
			} else {
				itWantReason(t, s.what, err, s.reason)
			}
			if n := idp.count(itPathKeys); n != s.wantFetches {
				t.Fatalf("%s: %d JWKS requests in all, want %d", s.what, n, s.wantFetches)
			}
		}
		if err := p.(itReadier).Ready(context.Background()); err == nil {
			t.Fatal("Ready while the only keys are too old and the IdP is down: nil, want an error")
		}

		idp.setOutage(itUp)
		clk.Advance(10 * time.Second)
		id, err = itVerifyDirect(p, raw)
		itWantOK(t, "IdP back", id, err)
		if err := p.(itReadier).Ready(context.Background()); err != nil {
			t.Fatalf("Ready with the IdP back: %v", err)
		}
	})

	t.Run("a cold processor fails closed, temporarily", func(t *testing.T) {
		idp := newITIdP(t)
		raw := idp.clientCredentials(itClientBot).AccessToken
		tests := []struct {
			name  string
			mode  itOutage
			paths []string
		}{
			{"every endpoint answers 503", it503, nil},
			{"connections are dropped", itDrop, nil},
			{"discovery answers 503", it503, []string{itPathDiscovery}},
			{"only the JWKS endpoint answers 503", it503, []string{itPathKeys}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				clk := testkit.NewClock(time.Now())
				p := itProcessor(t, &token.Config{Type: token.TypeOIDC, Issuer: idp.issuer, Audiences: []string{"clickhouse"}}, clk)
				// The Verifier's clock stands still: if it cached the
				// failure, it would still be serving it at the end.
				frozen := clk.Now()
				v := itVerifier(p, func() time.Time { return frozen })
				ctx := context.Background()

				idp.setOutage(tc.mode, tc.paths...)
				_, err := v.Verify(ctx, raw)
				itWantReason(t, "IdP down", err, token.ReasonUnavailable)
				if strings.Contains(err.Error(), raw) {
					t.Fatal("the error message echoes the token")
				}
				if err := p.(itReadier).Ready(ctx); err == nil {
					t.Fatal("Ready with the IdP down: nil, want an error")
				}
				requests := idp.count(itPathDiscovery) + idp.count(itPathKeys)
				for i := 0; i < 20; i++ {
					_, err = v.Verify(ctx, raw)
					itWantReason(t, "IdP still down", err, token.ReasonUnavailable)
				}
				if n := idp.count(itPathDiscovery) + idp.count(itPathKeys); n != requests {
					t.Fatalf("20 retries within 10 s made %d more requests to the IdP, want 0", n-requests)
				}

				idp.setOutage(itUp)
				clk.Advance(10 * time.Second) // the processor's retry interval
				id, err := v.Verify(ctx, raw)
				id = itWantOK(t, "IdP back", id, err)
				if id.Username != itClientBot {
					t.Fatalf("username %q, want %q", id.Username, itClientBot)
				}
				if err := p.(itReadier).Ready(ctx); err != nil {
					t.Fatalf("Ready with the IdP back: %v", err)
				}
			})
		}
	})
}

// ---------------------------------------------------------------------------
// 4. Opaque access tokens at the oidc processor (userinfo, introspection).

func TestIntegrationOIDCOpaqueAccessToken(t *testing.T) {
	idp := newITIdP(t)
	alice := idp.loginAs(itClientOpaque, "alice", "alice-pw").AccessToken
	bob := idp.loginAs(itClientOpaque, "bob", "bob-pw").AccessToken
	revoked := idp.loginAs(itClientOpaque, "alice", "alice-pw").AccessToken
	if parsed, err := token.Parse(alice); err != nil || parsed.LooksLikeJWT() {
		t.Fatalf("client %s got a JWT-shaped access token; the test needs an opaque one", itClientOpaque)
	}
	idp.revoke(itClientOpaque, revoked)

	userinfoOnly := func() *token.Config {
		return &token.Config{Type: token.TypeOIDC, Issuer: idp.issuer, UsernameClaim: "email", GroupsClaim: "groups"}
	}
	withIntrospection := func() *token.Config {
		c := userinfoOnly()
		c.ClientID, c.ClientSecret = itClientOpaque, itSecrets[itClientOpaque]
		return c
	}
	tests := []struct {
		name                string
		cfg                 *token.Config
		raw                 string
		reason              token.Reason
		wantUser            string
		wantGroups          []string
		wantExpiry          bool
		userinfo, introspec int
	}{
		{name: "userinfo", cfg: userinfoOnly(), raw: alice, wantUser: "alice@example.com",
			wantGroups: []string{"ch-analysts", "staff"}, userinfo: 1},
		{name: "introspection then userinfo", cfg: withIntrospection(), raw: alice, wantUser: "alice@example.com",
			wantGroups: []string{"ch-analysts", "staff"}, wantExpiry: true, userinfo: 1, introspec: 1},
		{name: "another person", cfg: userinfoOnly(), raw: bob, wantUser: "bob@example.com",
			wantGroups: []string{"ch-admins"}, userinfo: 1},
		{name: "required claim from userinfo", cfg: func() *token.Config {
			c := userinfoOnly()
			c.RequiredClaims = map[string]any{"email_verified": true}
			return c
		}(), raw: bob, reason: token.ReasonClaims, userinfo: 1},
		{name: "revoked at the IdP", cfg: userinfoOnly(), raw: revoked, reason: token.ReasonInactive, userinfo: 1},
		{name: "revoked, with introspection", cfg: withIntrospection(), raw: revoked, reason: token.ReasonInactive, introspec: 1},
		{name: "garbage", cfg: userinfoOnly(), raw: "bm90LWEtdG9rZW4", reason: token.ReasonInactive, userinfo: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := testkit.NewClock(time.Now())
			v := itVerifier(itProcessor(t, tc.cfg, clk), clk.Now)
			u0, i0 := idp.count(itPathUserinfo), idp.count(itPathIntrospection)
			id, err := v.Verify(context.Background(), tc.raw)
			if u, i := idp.count(itPathUserinfo)-u0, idp.count(itPathIntrospection)-i0; u != tc.userinfo || i != tc.introspec {
				t.Errorf("%d userinfo and %d introspection requests, want %d and %d", u, i, tc.userinfo, tc.introspec)
			}
			if tc.reason != "" {
				itWantReason(t, "Verify", err, tc.reason)
				return
			}
			id = itWantOK(t, "Verify", id, err)
			if id.Username != tc.wantUser || !slices.Equal(id.Groups, tc.wantGroups) {
				t.Fatalf("identity %q %v, want %q %v", id.Username, id.Groups, tc.wantUser, tc.wantGroups)
			}
			if want := strings.TrimSuffix(tc.wantUser, "@example.com"); id.Claims["preferred_username"] != want {
				t.Fatalf("claims %v lack userinfo's preferred_username %q", id.Claims, want)
			}
			if id.Subject != "u-"+strings.TrimSuffix(tc.wantUser, "@example.com") {
				t.Fatalf("subject %q", id.Subject)
			}
			if tc.wantExpiry {
				if d := time.Until(id.Expiry); d < 4*time.Minute || d > 6*time.Minute {
					t.Fatalf("expiry %s is not the provider's 5 minute token lifetime", id.Expiry)
				}
			}
			// Cached: a second lookup does not reach the IdP.
			u1 := idp.count(itPathUserinfo)
			if _, err := v.Verify(context.Background(), tc.raw); err != nil {
				t.Fatal(err)
			}
			if idp.count(itPathUserinfo) != u1 {
				t.Fatal("a cached identity was looked up at the IdP again")
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 5. RFC 7662 introspection with the opaque processor.

func TestIntegrationOpaqueIntrospection(t *testing.T) {
	idp := newITIdP(t)
	d := idp.discovery()
	if d.IntrospectionEndpoint == "" || d.RevocationEndpoint == "" {
		t.Fatalf("discovery lacks introspection or revocation endpoint: %+v", d)
	}
	active := idp.loginAs(itClientOpaque, "alice", "alice-pw").AccessToken
	revoked := idp.loginAs(itClientOpaque, "alice", "alice-pw").AccessToken
	forOther := idp.loginAs(itClientOther, "alice", "alice-pw").AccessToken
	jwtToken := idp.loginAs(itClientJWT, "alice", "alice-pw").AccessToken

	cfg := func(change func(*token.Config)) *token.Config {
		c := &token.Config{
			Type: token.TypeOpaque, Issuer: idp.issuer, IntrospectionURL: d.IntrospectionEndpoint,
			ClientID: itClientOpaque, ClientSecret: itSecrets[itClientOpaque], Audiences: []string{itClientOpaque},
			UsernameClaim: "email", GroupsClaim: "groups",
		}
		if change != nil {
			change(c)
		}
		return c
	}

	// The token to be revoked is active first, so the revocation is what
	// changes the answer.
	clk := testkit.NewClock(time.Now())
	id, err := itVerifier(itProcessor(t, cfg(nil), clk), clk.Now).Verify(context.Background(), revoked)
	itWantOK(t, "before revocation", id, err)
	idp.revoke(itClientOpaque, revoked)

	tests := []struct {
		name      string
		cfg       *token.Config
		raw       string
		reason    token.Reason
		introspec int
		userinfo  int
	}{
		{name: "active", cfg: cfg(nil), raw: active, introspec: 1},
		{name: "active, with userinfo too", cfg: cfg(func(c *token.Config) { c.UserinfoURL = d.UserinfoEndpoint }), raw: active, introspec: 1, userinfo: 1},
		{name: "revoked", cfg: cfg(nil), raw: revoked, reason: token.ReasonInactive, introspec: 1},
		{name: "garbage", cfg: cfg(nil), raw: "bm90LWEtdG9rZW4", reason: token.ReasonInactive, introspec: 1},
		{name: "issued to another client", cfg: cfg(nil), raw: forOther, reason: token.ReasonInactive, introspec: 1},
		{name: "wrong audience configured", cfg: cfg(func(c *token.Config) { c.Audiences = []string{"clickhouse"} }), raw: active, reason: token.ReasonAudience, introspec: 1},
		{name: "wrong issuer configured", cfg: cfg(func(c *token.Config) { c.Issuer = "https://idp.invalid" }), raw: active, reason: token.ReasonIssuer, introspec: 1},
		{name: "wrong client secret", cfg: cfg(func(c *token.Config) { c.ClientSecret = "wrong" }), raw: active, reason: token.ReasonUnavailable, introspec: 1},
		{name: "a JWT is never sent to introspection", cfg: cfg(nil), raw: jwtToken, reason: token.ReasonIssuer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := testkit.NewClock(time.Now())
			v := itVerifier(itProcessor(t, tc.cfg, clk), clk.Now)
			i0, u0 := idp.count(itPathIntrospection), idp.count(itPathUserinfo)
			id, err := v.Verify(context.Background(), tc.raw)
			if i, u := idp.count(itPathIntrospection)-i0, idp.count(itPathUserinfo)-u0; i != tc.introspec || u != tc.userinfo {
				t.Errorf("%d introspection and %d userinfo requests, want %d and %d", i, u, tc.introspec, tc.userinfo)
			}
			if tc.reason != "" {
				itWantReason(t, "Verify", err, tc.reason)
				if strings.Contains(err.Error(), tc.raw) || strings.Contains(err.Error(), itSecrets[itClientOpaque]) {
					t.Fatal("the error message echoes the token or the client secret")
				}
				return
			}
			id = itWantOK(t, "Verify", id, err)
			if id.Username != "alice@example.com" || id.Subject != "u-alice" || !slices.Equal(id.Groups, []string{"ch-analysts", "staff"}) {
				t.Fatalf("identity %q %q %v", id.Username, id.Subject, id.Groups)
			}
			if d := time.Until(id.Expiry); d < 4*time.Minute || d > 6*time.Minute {
				t.Fatalf("expiry %s is not the introspected exp (5 minutes)", id.Expiry)
			}
			if id.Claims["client_id"] != itClientOpaque || id.Claims["active"] != true {
				t.Fatalf("claims %v lack the introspection answer", id.Claims)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 6. Concurrent requests for one token share one verification.

func TestIntegrationConcurrentVerify(t *testing.T) {
	idp := newITIdP(t)
	const n = 50

	wave := func(t *testing.T, v *token.Verifier, raw func(i int) string, wantUser string) {
		t.Helper()
		users := make([]string, n)
		errs := make([]error, n)
		itRun(n, func(i int) {
			id, err := v.Verify(context.Background(), raw(i))
			if err != nil {
				errs[i] = err
				return
			}
			users[i] = id.Username
		})
		if err := errors.Join(errs...); err != nil {
			failed := 0
			for _, e := range errs {
				if e != nil {
					failed++
				}
			}
			t.Fatalf("%d of %d concurrent verifications failed, e.g. %v (reason %s)", failed, n, err, token.ReasonOf(err))
		}
		for _, u := range users {
			if u != wantUser {
				t.Fatalf("identity %q, want %q", u, wantUser)
			}
		}
	}
	type counts struct{ discovery, keys, userinfo int }
	snapshot := func() counts {
		return counts{idp.count(itPathDiscovery), idp.count(itPathKeys), idp.count(itPathUserinfo)}
	}
	delta := func(a, b counts) counts {
		return counts{b.discovery - a.discovery, b.keys - a.keys, b.userinfo - a.userinfo}
	}

	t.Run("one opaque token: one userinfo call", func(t *testing.T) {
		raw := idp.loginAs(itClientOpaque, "alice", "alice-pw").AccessToken
		clk := testkit.NewClock(time.Now())
		v := itVerifier(itProcessor(t, &token.Config{Type: token.TypeOIDC, Issuer: idp.issuer, UsernameClaim: "email"}, clk), clk.Now)
		// A slow answer keeps the first verification in flight while the
		// others arrive, so they must share it rather than find it cached.
		idp.setDelay(itPathUserinfo, 100*time.Millisecond)
		defer idp.setDelay(itPathUserinfo, 0)
		before := snapshot()
		wave(t, v, func(int) string { return raw }, "alice@example.com")
		if got := delta(before, snapshot()); got != (counts{discovery: 1, userinfo: 1}) {
			t.Fatalf("first wave: %+v requests, want one discovery and one userinfo", got)
		}
		before = snapshot()
		wave(t, v, func(int) string { return raw }, "alice@example.com")
		if got := delta(before, snapshot()); got != (counts{}) {
			t.Fatalf("second wave: %+v requests, want none (cache)", got)
		}
	})

	t.Run("one JWT: one discovery and one JWKS fetch", func(t *testing.T) {
		raw := idp.clientCredentials(itClientBot).AccessToken
		clk := testkit.NewClock(time.Now())
		v := itVerifier(itProcessor(t, &token.Config{Type: token.TypeOIDC, Issuer: idp.issuer, Audiences: []string{"clickhouse"}}, clk), clk.Now)
		idp.setDelay(itPathKeys, 100*time.Millisecond)
		defer idp.setDelay(itPathKeys, 0)
		before := snapshot()
		wave(t, v, func(int) string { return raw }, itClientBot)
		if got := delta(before, snapshot()); got != (counts{discovery: 1, keys: 1}) {
			t.Fatalf("first wave: %+v requests, want one discovery and one JWKS", got)
		}
		before = snapshot()
		wave(t, v, func(int) string { return raw }, itClientBot)
		if got := delta(before, snapshot()); got != (counts{}) {
			t.Fatalf("second wave: %+v requests, want none (cache)", got)
		}
	})
}

// ---------------------------------------------------------------------------
// Verifications that need keys while a JWKS fetch is in flight wait for it
// rather than fail: no idp_unavailable on a cold start, no unknown_key
// (which the Verifier would cache for 5 s) for a freshly rotated kid.

func TestIntegrationVerificationsDuringJWKSFetch(t *testing.T) {
	idp := newITIdP(t)
	cfg := func() *token.Config {
		return &token.Config{Type: token.TypeOIDC, Issuer: idp.issuer, Audiences: []string{"clickhouse"}}
	}
	// inFlight starts a verification of first that fetches the JWKS, waits
	// until the fetch reached the provider, and returns its result channel.
	inFlight := func(t *testing.T, v *token.Verifier, first string) <-chan error {
		t.Helper()
		idp.setDelay(itPathKeys, 300*time.Millisecond)
		t.Cleanup(func() { idp.setDelay(itPathKeys, 0) })
		fetches := idp.count(itPathKeys)
		done := make(chan error, 1)
		go func() {
			_, err := v.Verify(context.Background(), first)
			done <- err
		}()
		for deadline := time.Now().Add(5 * time.Second); idp.count(itPathKeys) == fetches; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the first verification did not fetch the JWKS")
			}
		}
		return done
	}

	t.Run("cold start", func(t *testing.T) {
		a, b := idp.clientCredentials(itClientBot).AccessToken, idp.clientCredentials(itClientBot).AccessToken
		clk := testkit.NewClock(time.Now())
		v := itVerifier(itProcessor(t, cfg(), clk), clk.Now)
		done := inFlight(t, v, a)
		id, err := v.Verify(context.Background(), b)
		itWantOK(t, "second token while the first JWKS fetch is in flight", id, err)
		if err := <-done; err != nil {
			t.Fatalf("first token: %v", err)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		clk := testkit.NewClock(time.Now())
		v := itVerifier(itProcessor(t, cfg(), clk), clk.Now)
		id, err := v.Verify(context.Background(), idp.clientCredentials(itClientBot).AccessToken)
		itWantOK(t, "warm-up", id, err)
		next := itNewKey(t, "key-rotated")
		idp.rotate(next, idp.signingKey(), next)
		a, b := idp.clientCredentials(itClientBot).AccessToken, idp.clientCredentials(itClientBot).AccessToken
		clk.Advance(11 * time.Second)
		done := inFlight(t, v, a)
		_, errB := v.Verify(context.Background(), b)
		if err := <-done; err != nil {
			t.Fatalf("first new-kid token: %v", err)
		}
		if errB != nil {
			t.Fatalf("second new-kid token while the refresh is in flight: %v (reason %s)", errB, token.ReasonOf(errB))
		}
		id, err = v.Verify(context.Background(), b)
		itWantOK(t, "second new-kid token after the refresh", id, err)
	})

	t.Run("burst of different tokens on a cold processor", func(t *testing.T) {
		const n = 50
		raws := make([]string, n)
		for i := range raws {
			raws[i] = idp.clientCredentials(itClientBot).AccessToken
		}
		clk := testkit.NewClock(time.Now())
		v := itVerifier(itProcessor(t, cfg(), clk), clk.Now)
		k0 := idp.count(itPathKeys)
		errs := make([]error, n)
		itRun(n, func(i int) { _, errs[i] = v.Verify(context.Background(), raws[i]) })
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("concurrent first verifications failed: %v", err)
		}
		if k := idp.count(itPathKeys) - k0; k != 1 {
			t.Fatalf("%d JWKS requests, want 1", k)
		}
	})
}
