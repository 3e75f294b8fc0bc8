package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/oauth/cimd"
	"github.com/clickgate/clickgate/internal/oauth/seal"
	"github.com/clickgate/clickgate/internal/oauth/store"
	"github.com/clickgate/clickgate/internal/oauth/upstream"
	"github.com/clickgate/clickgate/internal/pages"
	"github.com/clickgate/clickgate/internal/token"
)

// Keys signs the broker's access tokens and publishes their public keys.
type Keys interface {
	Signing() (kid string, key *ecdsa.PrivateKey)
	Public() []jose.JSONWebKey
}

// VerificationKeys adapts the broker's signing keys to the token
// verifier's key source.
func VerificationKeys(k Keys) interface {
	Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error)
} {
	return keySource{k}
}

type keySource struct{ ring Keys }

// Keys returns the published keys with id kid (all when kid is empty).
func (s keySource) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	var out []jose.JSONWebKey
	for _, k := range s.ring.Public() {
		if kid == "" || k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out, nil
}

// Authenticator proves who an upstream access token belongs to.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, c authn.Credentials, iface string) (*authn.Result, error)
}

// Options configure a Broker.
type Options struct {
	Issuer   string // server.public_url
	Resource string // the MCP resource every token is for
	// Audiences are added to every access token's aud: ClickHouse's own
	// audience when clickgate forwards the token (bearer mode).
	Audiences []string
	Scopes    []string // scopes_supported
	Upstream  *upstream.Client
	Auth      Authenticator
	Keys      Keys
	Sealer    *seal.Sealer
	Store     store.Store
	// Clients are pre-registered clients.
	Clients    []config.BrokerClient
	Documents  *cimd.Fetcher
	AccessTTL  time.Duration
	RefreshTTL time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
	// Registerer takes the broker's metrics; nil means none are exported.
	Registerer prometheus.Registerer
	// Audit records sign-ins, tokens issued and refreshed, replays and
	// registrations; nil records nothing.
	Audit *audit.Log
}

// Lifetimes of the broker's transient state.
const (
	consentTTL = 10 * time.Minute // consent page shown → answered
	pendingTTL = 10 * time.Minute // upstream sign-in started → callback
	codeTTL    = 60 * time.Second // authorization code issued → redeemed
)

// Purposes of the broker's sealed blobs: a blob sealed for one purpose
// never opens as another.
const (
	PurposePending = "pending" // pending authorization (between /authorize and /callback)
	PurposeCode    = "code"    // authorization code
	PurposeClient  = "client"  // dynamically registered client (its client_id)
	PurposeConsent = "consent" // a validated request shown on the consent page
	PurposeRefresh = "refresh" // refresh token
)

// Broker is clickgate's OAuth authorization server for MCP clients: it
// checks the client and its request, asks the person's consent, lets the
// upstream IdP sign the person in, and issues its own tokens for the MCP
// resource.
type Broker struct {
	opts     Options
	issuer   string
	sealer   *seal.Sealer
	store    store.Store
	clients  *clients
	metadata http.Handler
	log      *slog.Logger
	now      func() time.Time
	secure   bool // cookies only over https

	signIns       *prometheus.CounterVec
	tokenRequests *prometheus.CounterVec
}

// New returns a broker, which serves Paths.
func New(o Options) *Broker {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	b := &Broker{
		opts: o, issuer: strings.TrimRight(o.Issuer, "/"), sealer: o.Sealer, store: o.Store,
		log: o.Logger, now: o.Now, secure: strings.HasPrefix(o.Issuer, "https://"),
		metadata: MetadataHandler(NewServerMetadata(o.Issuer, MetadataOptions{Scopes: o.Scopes})),
		clients:  &clients{configured: map[string]*Client{}, documents: o.Documents, sealer: o.Sealer},
	}
	b.signIns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clickgate_oauth_sign_ins_total",
		Help: "Sign-ins through the OAuth broker's callback, by result (success or the error sent to the client).",
	}, []string{"result"})
	b.tokenRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clickgate_oauth_token_requests_total",
		Help: "Token endpoint requests by grant type and result (success or the OAuth error code).",
	}, []string{"grant_type", "result"})
	if o.Registerer != nil {
		o.Registerer.MustRegister(b.signIns, b.tokenRequests)
	}
	for _, c := range o.Clients {
		b.clients.configured[c.ClientID] = &Client{ID: c.ClientID, Name: c.ClientName, RedirectURIs: c.RedirectURIs, Kind: ClientConfigured, secret: c.ClientSecret}
	}
	return b
}

// Paths are the paths a Broker serves.
var Paths = []string{PathASMetadata, PathOIDCDiscovery, PathAuthorize, PathToken, PathRegister, PathCallback, PathJWKS}

// ServeHTTP routes the broker's endpoints.
func (b *Broker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case PathASMetadata, PathOIDCDiscovery:
		b.metadata.ServeHTTP(w, r)
	case PathAuthorize:
		if r.Method == http.MethodPost {
			b.consent(w, r)
		} else {
			b.authorize(w, r)
		}
	case PathCallback:
		b.callback(w, r)
	case PathToken:
		if cors(w, r) {
			b.token(w, r)
		}
	case PathRegister:
		if cors(w, r) {
			b.register(w, r)
		}
	case PathJWKS:
		b.jwks(w, r)
	default:
		http.NotFound(w, r)
	}
}

// cors lets browser-based MCP clients call the token and registration
// endpoints (they carry no cookies); it answers preflights itself and
// reports whether the request is still to be served.
func cors(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	return true
}

// authRequest is a checked authorization request.
type authRequest struct {
	ClientID    string `json:"c"`
	RedirectURI string `json:"r"`
	// RedirectGiven: the request named redirect_uri, so the token
	// request must name it too (RFC 6749 §4.1.3).
	RedirectGiven bool   `json:"rg,omitempty"`
	State         string `json:"s,omitempty"`
	Challenge     string `json:"pc"`
	Scope         string `json:"sc,omitempty"`
	Resource      string `json:"rs"`
	// Nonce binds the consent form and the upstream sign-in to the
	// browser that started them (a cookie holds it).
	Nonce string `json:"n"`
}

// pendingSignIn is the upstream state parameter.
type pendingSignIn struct {
	ID       string      `json:"id"`
	Request  authRequest `json:"rq"`
	Verifier string      `json:"v"`
}

// authorize checks an authorization request and shows the consent page.
// Until client and redirect_uri are verified, errors are shown on a page;
// after that they go back to the client.
func (b *Broker) authorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, POST")
		b.page(w, http.StatusMethodNotAllowed, "Method not allowed", "The authorization endpoint takes GET.")
		return
	}
	q := r.URL.Query()
	for _, k := range []string{"client_id", "redirect_uri", "response_type", "state", "code_challenge", "code_challenge_method", "scope", "resource"} {
		if len(q[k]) > 1 {
			b.page(w, http.StatusBadRequest, "Invalid sign-in request", fmt.Sprintf("The parameter %s appears more than once.", k))
			return
		}
	}
	client, err := b.clients.lookup(r.Context(), q.Get("client_id"))
	if err != nil {
		b.unknownClient(w, err)
		return
	}
	redirect := q.Get("redirect_uri")
	if redirect == "" && len(client.RedirectURIs) == 1 {
		redirect = client.RedirectURIs[0]
	}
	if !slices.ContainsFunc(client.RedirectURIs, func(reg string) bool { return RedirectURIMatches(reg, redirect) }) {
		b.log.Info("oauth: authorization refused: redirect_uri not registered", "client_id", clip(client.ID, 200))
		b.page(w, http.StatusBadRequest, "Invalid redirect", "The address this application wants to send you back to is not one it registered, so clickgate will not send you there.")
		return
	}
	req := authRequest{ClientID: client.ID, RedirectURI: redirect, RedirectGiven: q.Get("redirect_uri") != "", State: q.Get("state")}
	fail := func(code, desc string) { b.redirectError(w, r, req, code, desc) }
	if slices.Contains(strings.Fields(q.Get("prompt")), "none") {
		fail("consent_required", "clickgate asks the person every time; prompt=none cannot be honoured")
		return
	}
	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "response_type must be code")
		return
	}
	if err := ValidateChallenge(q.Get("code_challenge_method"), q.Get("code_challenge")); err != nil {
		fail("invalid_request", strings.TrimPrefix(err.Error(), "oauth: ")+" (PKCE with S256 is required)")
		return
	}
	req.Challenge = q.Get("code_challenge")
	req.Resource = q.Get("resource")
	if req.Resource == "" {
		req.Resource = b.opts.Resource
	} else if strings.TrimRight(req.Resource, "/") != b.opts.Resource {
		fail("invalid_target", "resource must be "+b.opts.Resource+"; clickgate issues tokens only for its own MCP endpoint")
		return
	}
	req.Resource = b.opts.Resource
	req.Scope = b.grantScope(q.Get("scope"))
	req.Nonce = randomString()
	sealed, err := b.sealer.Seal(PurposeConsent, req, consentTTL)
	if err != nil {
		b.internalError(w, r, err)
		return
	}
	b.setNonceCookie(w, req.Nonce)
	pages.Render(w, b.log, pageTemplates, http.StatusOK, "consent", consentPage{
		Client: client.DisplayName(), ClientID: client.ID, Kind: client.Kind, Redirect: redirect,
		Scopes: strings.Fields(req.Scope), Resource: req.Resource, Request: sealed, CSRF: req.Nonce,
	})
}

// unknownClient shows the page for a client that lookup refused. A refused
// Client ID Metadata Document gets a generic page (its reason could tell
// anyone how internal names resolve) and a request id under which the log
// has the reason; the other refusals name no address and are shown.
func (b *Broker) unknownClient(w http.ResponseWriter, err error) {
	if isDocumentError(err) {
		id := b.withheld(slog.LevelInfo, "oauth: authorization refused: client metadata document", "reason", err.Error())
		b.page(w, http.StatusBadRequest, "This application could not be verified",
			"The application that sent you here could not be verified: "+documentRefused+
				", so clickgate will not sign you in to it. Go back to the application and try again later, or tell its maker "+
				"(the document must be JSON served at a public https address without redirects, with its own URL as client_id and its redirect_uris). "+
				"clickgate's administrator can find the details in clickgate's log under request id "+id+".")
		return
	}
	b.log.Info("oauth: authorization refused", "reason", err.Error())
	b.page(w, http.StatusBadRequest, "Unknown application", "The application that sent you here is not known to clickgate ("+err.Error()+"). Go back to it and try again, or tell its maker.")
}

// grantScope grants the requested scopes clickgate offers; others are
// not granted (RFC 6749 §3.3 lets the server issue fewer, and the token
// response says which), since clients send scopes of their own. No
// offered scope asked for gives every offered scope.
func (b *Broker) grantScope(requested string) string {
	var out []string
	for _, s := range strings.Fields(requested) {
		if slices.Contains(b.opts.Scopes, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		out = b.opts.Scopes
	}
	return strings.Join(out, " ")
}

// consent receives the consent form: on Allow the person goes to the
// upstream IdP to sign in.
func (b *Broker) consent(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		b.page(w, http.StatusBadRequest, "Invalid form", "The consent form could not be read.")
		return
	}
	var req authRequest
	if err := b.sealer.Open(PurposeConsent, r.PostForm.Get("request"), &req); err != nil {
		if errors.Is(err, seal.ErrExpired) {
			b.page(w, http.StatusBadRequest, "This page has expired", "The consent page was open too long. Go back to the application and start again.")
			return
		}
		b.page(w, http.StatusBadRequest, "Invalid form", "The consent form was changed or does not come from clickgate.")
		return
	}
	if !b.nonceMatches(r, req.Nonce, r.PostForm.Get("csrf")) {
		b.log.Warn("oauth: consent refused: CSRF value missing or wrong", "client_id", clip(req.ClientID, 200))
		b.page(w, http.StatusForbidden, "Request refused", "This consent was not given on clickgate's page in this browser (the form's CSRF value is missing or wrong). Go back to the application and start again.")
		return
	}
	if r.PostForm.Get("action") != "allow" {
		b.redirectError(w, r, req, "access_denied", "the person declined")
		return
	}
	p := pendingSignIn{ID: randomString(), Request: req, Verifier: oauth2.GenerateVerifier()}
	state, err := b.sealer.Seal(PurposePending, p, pendingTTL)
	if err != nil {
		b.internalError(w, r, err)
		return
	}
	target, err := b.opts.Upstream.AuthCodeURL(r.Context(), state, p.Verifier)
	if err != nil {
		id := b.withheld(slog.LevelError, "oauth: upstream IdP unavailable", "error", err)
		b.redirectError(w, r, req, "temporarily_unavailable", "the identity provider cannot be reached (clickgate request id "+id+")")
		return
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// callback receives the person back from the upstream IdP, checks who
// they are, and sends an authorization code to the client.
func (b *Broker) callback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var p pendingSignIn
	if err := b.sealer.Open(PurposePending, q.Get("state"), &p); err != nil {
		if errors.Is(err, seal.ErrExpired) {
			b.page(w, http.StatusBadRequest, "Sign-in took too long", "Go back to the application and start again.")
			return
		}
		b.page(w, http.StatusBadRequest, "Invalid sign-in response", "The identity provider's answer does not belong to a sign-in started here.")
		return
	}
	req := p.Request
	if !b.nonceMatches(r, req.Nonce, req.Nonce) {
		b.log.Warn("oauth: callback refused: not the browser that started the sign-in", "client_id", clip(req.ClientID, 200))
		b.page(w, http.StatusForbidden, "Sign-in refused", "This sign-in was started in another browser. Go back to the application and start again.")
		return
	}
	if err := b.store.Use(r.Context(), "state:"+p.ID, b.now().Add(pendingTTL)); err != nil {
		if errors.Is(err, store.ErrReplay) {
			b.log.Warn("oauth: callback refused: state used before", "client_id", clip(req.ClientID, 200))
			b.page(w, http.StatusBadRequest, "Sign-in already finished", "This sign-in response was used before. Go back to the application and start again.")
			return
		}
		b.internalError(w, r, err)
		return
	}
	b.clearNonceCookie(w, req.Nonce)
	if e := q.Get("error"); e != "" {
		b.redirectError(w, r, req, "access_denied", "the identity provider did not sign the person in ("+clip(e, 64)+")")
		return
	}
	if iss := q.Get("iss"); iss != "" && b.opts.Upstream.Issuer != "" && iss != b.opts.Upstream.Issuer {
		b.redirectError(w, r, req, "access_denied", "the sign-in answer came from another identity provider")
		return
	}
	up, err := b.opts.Upstream.Exchange(r.Context(), q.Get("code"), p.Verifier)
	if err != nil {
		id := b.withheld(slog.LevelWarn, "oauth: upstream code exchange failed", "error", err)
		b.redirectError(w, r, req, "access_denied", "the identity provider did not confirm the sign-in (clickgate request id "+id+")")
		return
	}
	person, err := b.personFor(r, up.AccessToken, up.RefreshToken, b.now().Unix())
	if err != nil {
		id := b.withheld(slog.LevelWarn, "oauth: signed-in person refused", "error", err)
		code, desc := personRefusal(err, id)
		b.redirectError(w, r, req, code, desc)
		return
	}
	c := authCode{ID: randomString(), Request: req, Person: person}
	code, err := b.sealer.Seal(PurposeCode, c, codeTTL)
	if err != nil {
		b.internalError(w, r, err)
		return
	}
	b.log.Info("oauth: signed in", "user", person.Username, "client_id", clip(req.ClientID, 200))
	b.record(r, audit.SignIn, person, req.ClientID, "", nil)
	b.signIns.WithLabelValues("success").Inc()
	b.redirect(w, r, req, url.Values{"code": {code}})
}

// personRefusal is the OAuth error for a person personFor refused: the
// directory policy's reason (which names no address), or a generic
// description with the request id under which the log has the rest
// (token verification errors may carry the IdP's addresses and network
// errors).
func personRefusal(err error, requestID string) (code, desc string) {
	switch {
	case authn.Reason(err) == authn.ReasonDenied:
		return "access_denied", "clickgate does not let this person in: " + clip(err.Error(), 200)
	case token.IsTemporary(err):
		return "temporarily_unavailable", "clickgate cannot reach the identity provider to verify the sign-in; try again shortly (clickgate request id " + requestID + ")"
	}
	return "access_denied", "clickgate could not verify who signed in (clickgate request id " + requestID + ")"
}

// personFor proves who an upstream access token belongs to, with the
// upstream's processor and the directory policy (a session-log record).
func (b *Broker) personFor(r *http.Request, access, upstreamRefresh string, authTime int64) (person, error) {
	res, err := b.opts.Auth.Authenticate(r.Context(), r, authn.Credentials{Token: access}, audit.InterfaceBroker)
	if err == nil && res.Identity.Processor != b.opts.Upstream.Processor {
		err = fmt.Errorf("the token was proved by processor %s, not %s", res.Identity.Processor, b.opts.Upstream.Processor)
	}
	if err != nil {
		return person{}, err
	}
	return personOf(res, authTime, upstreamRefresh), nil
}

// redirect sends the browser back to the client with params plus state
// and iss (RFC 9207).
func (b *Broker) redirect(w http.ResponseWriter, r *http.Request, req authRequest, params url.Values) {
	u, err := url.Parse(req.RedirectURI)
	if err != nil { // checked at /authorize
		b.internalError(w, r, err)
		return
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if req.State != "" {
		q.Set("state", req.State)
	}
	q.Set("iss", b.issuer)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

func (b *Broker) redirectError(w http.ResponseWriter, r *http.Request, req authRequest, code, desc string) {
	if r.URL.Path == PathCallback {
		b.signIns.WithLabelValues(code).Inc()
	}
	b.redirect(w, r, req, url.Values{"error": {code}, "error_description": {desc}})
}

// The nonce cookie is named after the nonce, so that sign-ins in several
// tabs do not overwrite each other's.
func nonceCookieName(nonce string) string {
	sum := sha256.Sum256([]byte(nonce))
	return "clickgate_oauth_" + base64.RawURLEncoding.EncodeToString(sum[:6])
}

func (b *Broker) setNonceCookie(w http.ResponseWriter, nonce string) {
	http.SetCookie(w, &http.Cookie{
		Name: nonceCookieName(nonce), Value: nonce, Path: "/oauth/", MaxAge: int((consentTTL + pendingTTL).Seconds()),
		HttpOnly: true, Secure: b.secure, SameSite: http.SameSiteLaxMode,
	})
}

func (b *Broker) clearNonceCookie(w http.ResponseWriter, nonce string) {
	http.SetCookie(w, &http.Cookie{Name: nonceCookieName(nonce), Value: "", Path: "/oauth/", MaxAge: -1, HttpOnly: true, Secure: b.secure, SameSite: http.SameSiteLaxMode})
}

// nonceMatches reports whether the browser's cookie and the presented
// value both equal nonce.
func (b *Broker) nonceMatches(r *http.Request, nonce, presented string) bool {
	if nonce == "" || presented == "" {
		return false
	}
	c, err := r.Cookie(nonceCookieName(nonce))
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(nonce)) == 1 &&
		subtle.ConstantTimeCompare([]byte(presented), []byte(nonce)) == 1
}

// jwks publishes the access-token signing keys.
func (b *Broker) jwks(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		jsonError(w, http.StatusMethodNotAllowed, "invalid_request", "the JWKS takes GET")
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: b.opts.Keys.Public()})
}

//go:embed pages/*.html
var pageFiles embed.FS

var pageTemplates = pages.Parse(pageFiles, "pages/*.html")

type consentPage struct {
	Client   string
	ClientID string
	Kind     string
	Redirect string
	Scopes   []string
	Resource string
	Request  string
	CSRF     string
}

type messagePage struct {
	Title string
	Text  string
}

func (b *Broker) page(w http.ResponseWriter, status int, title, text string) {
	pages.Render(w, b.log, pageTemplates, status, "message", messagePage{Title: title, Text: text})
}

func (b *Broker) internalError(w http.ResponseWriter, r *http.Request, err error) {
	id := b.withheld(slog.LevelError, "oauth: internal error", "path", r.URL.Path, "error", err)
	if r.URL.Path == PathToken || r.URL.Path == PathRegister {
		jsonError(w, http.StatusInternalServerError, "server_error", "clickgate could not complete the request; its log has the details under request id "+id)
		return
	}
	b.page(w, http.StatusInternalServerError, "Something went wrong", "clickgate could not complete the sign-in. Its administrator can find the details in clickgate's log under request id "+id+".")
}

// withheld logs the details of a refusal or failure under a new request
// id and returns the id, which is all the browser or client is shown.
func (b *Broker) withheld(level slog.Level, msg string, args ...any) string {
	id := newRequestID()
	b.log.Log(context.Background(), level, msg, append([]any{"request_id", id}, args...)...)
	return id
}

// newRequestID names one refusal whose details are withheld from the
// browser or client: they are logged with it as request_id.
func newRequestID() string { return randomString()[:16] }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// randomString is 256 random bits, base64url.
func randomString() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// clip shortens s to n bytes for a log line or an error description.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
