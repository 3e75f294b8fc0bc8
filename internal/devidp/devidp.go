// Package devidp is clickgate's built-in development identity provider: a
// real OpenID provider (github.com/zitadel/oidc/v3/pkg/op) with the people
// and applications of the configuration's dev_idp section, served under
// /idp on clickgate's listener (issuer server.public_url + "/idp").
//
// It offers discovery, JWKS, the authorization code grant with PKCE (S256),
// refresh tokens (rotated on use), client credentials, device authorization
// (RFC 8628) with a verification page, token exchange (RFC 8693), userinfo,
// introspection and revocation. Access tokens are JWTs (ES256) carrying
// email, email_verified, preferred_username, name, groups and scope, so
// clickgate's own oidc token processor verifies them like any IdP's.
//
// Besides the configured clients there is always the public client
// "clickgate-cli" for clickgate login: PKCE with a loopback redirect
// (http://127.0.0.1:<any port>/callback) or the device flow.
//
// The signing key is made on first start and kept in dev_idp.key_file
// (mode 0600, see package keyring); clickgate idp rotate-key replaces it
// and keeps the old one published until the tokens it signed have expired.
// Sign-in, token and device records live in memory and are gone after a
// restart; tokens already issued keep verifying by signature.
package devidp

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/keyring"
)

// Options are what a caller may supply; zero values are sensible.
type Options struct {
	Logger *slog.Logger
	// Now is the clock of the sign-in rate limit (tokens and keys go by
	// the real time, which their verifiers use).
	Now func() time.Time
}

// IdP is the development identity provider, an http.Handler for the
// paths under config.DevIdPPath.
type IdP struct {
	issuer     string
	issuerPath string // the issuer's URL path, e.g. /idp
	keyFile    string
	provider   *op.Provider
	store      *storage
	limit      *limiter
	log        *slog.Logger
	now        func() time.Time
	handler    http.Handler

	mu        sync.Mutex
	approvals map[string]*approval
}

// approval is a signed-in person's pending decision on a device code.
type approval struct {
	userCode string
	user     *user
	expires  time.Time
}

// New builds the provider of cfg.DevIdP; cfg has been loaded (defaults
// applied and validated). It creates the key file on first start.
func New(cfg *config.Config, opt Options) (*IdP, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	d := cfg.DevIdP
	issuer := cfg.DevIdPIssuer()
	iu, err := url.Parse(issuer)
	if err != nil || iu.Host == "" {
		return nil, fmt.Errorf("devidp: issuer %q (server.public_url + %s) is not a URL", issuer, config.DevIdPPath)
	}
	// cfg is validated: config applied the defaults (key file, lifetimes,
	// audiences) once, for everyone who reads them.
	keyFile, tokenTTL, refreshTTL, audiences := d.KeyFile, d.TokenTTL, d.RefreshTokenTTL, d.Audiences

	p := &IdP{
		issuer:     issuer,
		issuerPath: strings.TrimRight(iu.Path, "/"),
		keyFile:    keyFile,
		limit:      newLimiter(opt.Now),
		log:        opt.Logger.With("component", "dev_idp"),
		now:        opt.Now,
		approvals:  map[string]*approval{},
	}
	keys, err := keyring.Open(keyFile, time.Now, func(err error) { p.log.Warn(err.Error()) })
	if err != nil {
		return nil, err
	}
	store := newStorage()
	store.issuer = issuer
	store.users = newDirectory(d.Users)
	store.keys = keys
	store.audiences = audiences
	store.tokenTTL = tokenTTL
	store.refreshTT = refreshTTL
	loginURL := func(id string) string { return issuer + "/login?" + url.Values{"authRequestID": {id}}.Encode() }
	store.clients[CLIClientID] = newCLIClient(loginURL, tokenTTL)
	if cfg.BrokerUpstreamIsDevIdP() {
		store.clients[config.DevIdPBrokerClient] = newBrokerClient(cfg.Server.PublicURL+"/oauth/callback", loginURL, tokenTTL)
	}
	for _, c := range d.Clients {
		store.clients[c.ClientID] = newClient(c, loginURL, tokenTTL)
	}
	p.store = store

	var cryptoKey [32]byte
	rand.Read(cryptoKey[:])
	opCfg := &op.Config{
		CryptoKey:                cryptoKey,
		CryptoKeyId:              "dev-idp",
		DefaultLogoutRedirectURI: p.issuerPath + "/logged-out",
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedScopes:          []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, "groups", oidc.ScopeOfflineAccess},
		SupportedClaims:          append(append([]string{}, op.DefaultSupportedClaims...), "groups", "scope"),
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     deviceTTL,
			PollInterval: devicePoll,
			UserFormPath: p.issuerPath + "/device",
			UserCode:     op.UserCodeBase20,
		},
	}
	opts := []op.Option{
		op.WithAccessTokenVerifierOpts(op.WithSupportedAccessTokenSigningAlgorithms(string(keyring.Algorithm))),
		op.WithIDTokenHintVerifierOpts(op.WithSupportedIDTokenHintSigningAlgorithms(string(keyring.Algorithm))),
	}
	if iu.Scheme == "http" {
		opts = append(opts, op.WithAllowInsecure())
	}
	p.provider, err = op.NewProvider(opCfg, store, op.StaticIssuer(issuer), opts...)
	if err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/login", p.login)
	mux.HandleFunc("/device", p.device)
	mux.HandleFunc("/device/decide", p.deviceDecide)
	mux.HandleFunc("/logged-out", p.loggedOut)
	mux.Handle("/", p.provider)
	p.handler = http.StripPrefix(config.DevIdPPath, mux)
	p.log.Info("development identity provider on", "issuer", issuer, "key_file", keyFile, "users", len(d.Users), "clients", len(d.Clients)+1)
	return p, nil
}

// ServeHTTP serves the paths under config.DevIdPPath.
func (p *IdP) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.handler.ServeHTTP(w, r) }

// Issuer is the provider's issuer URL.
func (p *IdP) Issuer() string { return p.issuer }

// KeyFile is where the signing keys are kept.
func (p *IdP) KeyFile() string { return p.keyFile }

// KeepOldKeys is how long clickgate idp rotate-key keeps a replaced key
// published for the given token lifetime (dev_idp.token_ttl).
func KeepOldKeys(tokenTTL time.Duration) time.Duration { return tokenTTL + 5*time.Minute }

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Messages shown to people. A failed sign-in never says which of user name
// or password was wrong.
const (
	msgWrongCredentials = "Wrong user name or password."
	msgTooMany          = "Too many failed sign-in attempts. Wait a minute, then try again."
	msgRequestGone      = "This sign-in request is unknown or has expired. Go back to the application and start again."
	msgCodeGone         = "That code is unknown or has expired. Check the code shown on your device, or start again there."
)

// refusal is why a sign-in attempt failed, as shown to the person.
type refusal struct {
	status     int
	retryAfter time.Duration // for a rate limit
	message    string
}

// write sets the refusal's headers and returns its status.
func (f *refusal) write(w http.ResponseWriter) int {
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(f.retryAfter.Seconds())+1))
	}
	return f.status
}

// signIn checks a sign-in attempt under the rate limit.
func (p *IdP) signIn(r *http.Request, login, password string) (*user, *refusal) {
	addr := clientAddr(r)
	if blocked, wait := p.limit.blocked(login, addr); blocked {
		p.log.Warn("sign-in refused: too many failures", "login", login, "client_address", addr)
		return nil, &refusal{status: http.StatusTooManyRequests, retryAfter: wait, message: msgTooMany}
	}
	u, ok := p.store.users.authenticate(login, password)
	if !ok {
		p.limit.fail(login, addr)
		p.log.Warn("sign-in failed", "login", login, "client_address", addr)
		return nil, &refusal{status: http.StatusUnauthorized, message: msgWrongCredentials}
	}
	p.limit.succeed(login, addr)
	return u, nil
}

// readForm accepts GET and POST and parses a small form; it answers the
// request itself and returns false when it cannot.
func (p *IdP) readForm(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		p.message(w, http.StatusBadRequest, "Sign-in failed", "The form could not be read.")
		return false
	}
	return true
}

func (p *IdP) login(w http.ResponseWriter, r *http.Request) {
	if !p.readForm(w, r) {
		return
	}
	id := r.FormValue("authRequestID")
	clientID, ok := p.store.pendingRequest(id)
	if !ok {
		p.message(w, http.StatusBadRequest, "Sign-in failed", msgRequestGone)
		return
	}
	page := loginPage{RequestID: id, Client: clientName(clientID), Username: r.PostFormValue("username")}
	if r.Method == http.MethodGet {
		p.render(w, http.StatusOK, "login", page)
		return
	}
	u, refused := p.signIn(r, r.PostFormValue("username"), r.PostFormValue("password"))
	if refused != nil {
		page.Error = refused.message
		p.render(w, refused.write(w), "login", page)
		return
	}
	if _, err := p.store.completeLogin(id, u); err != nil {
		p.message(w, http.StatusBadRequest, "Sign-in failed", msgRequestGone)
		return
	}
	p.log.Info("signed in", "user", u.username, "client", clientID, "client_address", clientAddr(r))
	ctx := op.ContextWithIssuer(r.Context(), p.issuer)
	http.Redirect(w, r, op.AuthCallbackURL(p.provider)(ctx, id), http.StatusSeeOther)
}

// device is the verification page of the device flow: the code shown on
// the device, then the person's user name and password.
func (p *IdP) device(w http.ResponseWriter, r *http.Request) {
	if !p.readForm(w, r) {
		return
	}
	page := devicePage{UserCode: r.FormValue("user_code"), Username: r.PostFormValue("username")}
	if r.Method == http.MethodGet {
		p.render(w, http.StatusOK, "device", page)
		return
	}
	// Credentials first, so that codes cannot be probed without them.
	u, refused := p.signIn(r, r.PostFormValue("username"), r.PostFormValue("password"))
	if refused != nil {
		page.Error = refused.message
		p.render(w, refused.write(w), "device", page)
		return
	}
	clientID, scopes, ok := p.store.pendingDevice(page.UserCode)
	if !ok {
		page.Error = msgCodeGone
		page.CodeError = true
		p.render(w, http.StatusBadRequest, "device", page)
		return
	}
	id := randomID()
	p.mu.Lock()
	now := p.now()
	for k, a := range p.approvals {
		if now.After(a.expires) {
			delete(p.approvals, k)
		}
	}
	p.approvals[id] = &approval{userCode: page.UserCode, user: u, expires: now.Add(5 * time.Minute)}
	p.mu.Unlock()
	p.render(w, http.StatusOK, "confirm", confirmPage{Approval: id, Client: clientName(clientID), Username: u.username, Scopes: scopes})
}

// deviceDecide records the person's Allow or Deny.
func (p *IdP) deviceDecide(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		p.message(w, http.StatusBadRequest, "Sign-in failed", "The form could not be read.")
		return
	}
	p.mu.Lock()
	a, ok := p.approvals[r.PostFormValue("approval")]
	delete(p.approvals, r.PostFormValue("approval"))
	p.mu.Unlock()
	if !ok || p.now().After(a.expires) {
		p.message(w, http.StatusBadRequest, "Sign-in failed", "This approval is unknown or has expired. Start again on your device.")
		return
	}
	allow := r.PostFormValue("action") == "allow"
	if err := p.store.decideDevice(a.userCode, a.user, allow); err != nil {
		p.message(w, http.StatusBadRequest, "Sign-in failed", msgCodeGone)
		return
	}
	if !allow {
		p.log.Info("device sign-in denied", "user", a.user.username)
		p.message(w, http.StatusOK, "Sign-in denied", "The device was not signed in. You can close this page.")
		return
	}
	p.log.Info("device signed in", "user", a.user.username, "client_address", clientAddr(r))
	p.message(w, http.StatusOK, "Device signed in", "You are signed in on your device as "+a.user.username+". You can close this page and return to it.")
}

func (p *IdP) loggedOut(w http.ResponseWriter, r *http.Request) {
	p.message(w, http.StatusOK, "Signed out", "You are signed out. You can close this page.")
}

func clientName(id string) string {
	if id == CLIClientID {
		return "clickgate login (command line)"
	}
	return id
}
