package oauth

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/oauth/seal"
	"github.com/clickgate/clickgate/internal/oauth/store"
	"github.com/clickgate/clickgate/internal/oauth/upstream"
	"github.com/clickgate/clickgate/internal/token"
)

// Claims of the broker's access tokens that name the person; clickgate's
// own processor for them reads these, and ClickHouse builds with token
// processors can too (username_claim: username, groups_claim: roles).
const (
	ClaimUsername = "username"
	ClaimGroups   = "groups"
	ClaimRoles    = "roles"
)

// person is who signed in, as the upstream IdP proved it: what the
// broker's tokens say about them.
type person struct {
	Subject       string   `json:"sub"`
	Username      string   `json:"u"`
	Groups        []string `json:"g,omitempty"`
	Roles         []string `json:"r,omitempty"`
	Email         string   `json:"e,omitempty"`
	EmailVerified *bool    `json:"ev,omitempty"`
	AuthTime      int64    `json:"at"`
	// UpstreamRefresh is the upstream's refresh token, when it gave one:
	// every refresh here asks the upstream again, so a person removed or
	// signed out there loses access at their next refresh. It travels
	// only sealed.
	UpstreamRefresh string `json:"ur,omitempty"`
}

func personOf(res *authn.Result, authTime int64, upstreamRefresh string) person {
	id := res.Identity
	p := person{Subject: id.Subject, Username: id.Username, Groups: id.Groups, Roles: res.Principal.Roles,
		AuthTime: authTime, UpstreamRefresh: upstreamRefresh}
	if p.Subject == "" {
		p.Subject = id.Username
	}
	p.Email, _ = id.Claims["email"].(string)
	if v, ok := id.Claims["email_verified"].(bool); ok {
		p.EmailVerified = &v
	}
	return p
}

// authCode is what an authorization code seals.
type authCode struct {
	ID      string      `json:"id"`
	Request authRequest `json:"rq"`
	Person  person      `json:"p"`
}

// refreshToken is what a refresh token seals. Family is the code's ID;
// Gen counts rotations.
type refreshToken struct {
	Family   string `json:"f"`
	Gen      int    `json:"g"`
	ClientID string `json:"c"`
	Scope    string `json:"sc,omitempty"`
	Resource string `json:"rs"`
	Person   person `json:"p"`
	// Exp is the family's end: refreshing never extends a sign-in.
	Exp int64 `json:"x"`
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// token serves the token endpoint: authorization_code and refresh_token.
func (b *Broker) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		jsonError(w, http.StatusMethodNotAllowed, "invalid_request", "the token endpoint takes POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		jsonError(w, http.StatusBadRequest, "invalid_request", "the request body is not a form of at most 64 KiB")
		return
	}
	f := r.PostForm
	for k, v := range f {
		if len(v) > 1 {
			jsonError(w, http.StatusBadRequest, "invalid_request", "parameter "+clip(k, 64)+" appears more than once")
			return
		}
	}
	client, err := b.authenticateClient(r)
	if err != nil {
		desc := err.Error()
		if isDocumentError(err) {
			id := b.withheld(slog.LevelInfo, "oauth: token request refused: client metadata document", "reason", err.Error())
			desc = "the client is not known: " + documentRefused + " (clickgate request id " + id + ")"
		} else {
			b.log.Info("oauth: token request refused: client", "reason", err.Error())
		}
		if _, _, basic := r.BasicAuth(); basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="clickgate"`)
		}
		jsonError(w, http.StatusUnauthorized, "invalid_client", desc)
		b.tokenRequests.WithLabelValues(grantLabel(f.Get("grant_type")), "invalid_client").Inc()
		return
	}
	var resp *tokenResponse
	switch f.Get("grant_type") {
	case "authorization_code":
		resp, err = b.redeemCode(r, client)
	case "refresh_token":
		resp, err = b.refresh(r, client)
	case "":
		err = oauthErr("invalid_request", "grant_type is missing")
	default:
		err = oauthErr("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
	}
	if err != nil {
		code := errorCode(err, "")
		if code == "" {
			b.internalError(w, r, err)
			return
		}
		b.log.Info("oauth: token request refused", "client_id", clip(client.ID, 200), "error", code, "reason", err.Error())
		jsonError(w, http.StatusBadRequest, code, err.Error())
		b.tokenRequests.WithLabelValues(grantLabel(f.Get("grant_type")), code).Inc()
		return
	}
	b.tokenRequests.WithLabelValues(grantLabel(f.Get("grant_type")), "success").Inc()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

// grantLabel keeps the metric's label values to the known grants.
func grantLabel(g string) string {
	if g == "authorization_code" || g == "refresh_token" {
		return g
	}
	return "other"
}

// authenticateClient finds the client of a token request: Basic
// credentials (RFC 6749 §2.3.1, form-encoded), client_secret in the form,
// or a public client's client_id.
func (b *Broker) authenticateClient(r *http.Request) (*Client, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, errors.New("the Basic credentials are not form-encoded")
		}
		if f := r.PostForm.Get("client_id"); f != "" && f != id {
			return nil, errors.New("client_id in the form differs from the Basic credentials")
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	c, err := b.clients.lookup(r.Context(), id)
	if err != nil {
		return nil, err
	}
	if !c.authenticate(secret) {
		if c.Public() {
			return nil, errors.New("this client is public and must not send a client_secret")
		}
		return nil, errors.New("client authentication failed")
	}
	return c, nil
}

func (b *Broker) redeemCode(r *http.Request, client *Client) (*tokenResponse, error) {
	f := r.PostForm
	var c authCode
	if err := b.sealer.Open(PurposeCode, f.Get("code"), &c); err != nil {
		if errors.Is(err, seal.ErrExpired) {
			return nil, oauthErr("invalid_grant", "the authorization code has expired (codes live %s)", codeTTL)
		}
		return nil, oauthErr("invalid_grant", "the authorization code is invalid")
	}
	switch {
	case c.Request.ClientID != client.ID:
		return nil, oauthErr("invalid_grant", "the authorization code was issued to another client")
	case f.Get("redirect_uri") != c.Request.RedirectURI && (c.Request.RedirectGiven || f.Get("redirect_uri") != ""):
		return nil, oauthErr("invalid_grant", "redirect_uri differs from the authorization request's")
	case f.Get("resource") != "" && strings.TrimRight(f.Get("resource"), "/") != c.Request.Resource:
		return nil, oauthErr("invalid_target", "resource must be %s", c.Request.Resource)
	}
	if err := VerifyPKCE("S256", c.Request.Challenge, f.Get("code_verifier")); err != nil {
		return nil, oauthErr("invalid_grant", "%s", strings.TrimPrefix(err.Error(), "oauth: "))
	}
	ctx := r.Context()
	familyEnd := b.now().Add(b.opts.RefreshTTL)
	if err := b.store.Use(ctx, "code:"+c.ID, b.now().Add(codeTTL)); err != nil {
		if !errors.Is(err, store.ErrReplay) {
			return nil, err
		}
		// RFC 6749 §4.1.2: a code used twice revokes what it gave.
		if err := b.store.Revoke(ctx, c.ID, familyEnd); err != nil {
			return nil, err
		}
		b.log.Warn("oauth: authorization code replayed; its tokens are revoked", "client_id", clip(client.ID, 200), "user", c.Person.Username)
		b.record(r, audit.RefreshReplay, c.Person, client.ID, "the authorization code was used twice; the tokens issued for it are revoked", nil)
		return nil, oauthErr("invalid_grant", "the authorization code was used before; the tokens issued for it are revoked")
	}
	if err := b.store.StartFamily(ctx, c.ID, familyEnd); err != nil {
		if errors.Is(err, store.ErrRevoked) {
			return nil, oauthErr("invalid_grant", "the authorization code was used before")
		}
		return nil, err
	}
	resp, err := b.issue(refreshToken{
		Family: c.ID, ClientID: client.ID, Scope: c.Request.Scope, Resource: c.Request.Resource,
		Person: c.Person, Exp: familyEnd.Unix(),
	})
	if err == nil {
		b.record(r, audit.TokenIssued, c.Person, client.ID, "", map[string]any{"scope": c.Request.Scope, "resource": c.Request.Resource})
	}
	return resp, err
}

func (b *Broker) refresh(r *http.Request, client *Client) (*tokenResponse, error) {
	var rt refreshToken
	if err := b.sealer.Open(PurposeRefresh, r.PostForm.Get("refresh_token"), &rt); err != nil {
		if errors.Is(err, seal.ErrExpired) {
			return nil, oauthErr("invalid_grant", "the refresh token has expired; sign in again")
		}
		return nil, oauthErr("invalid_grant", "the refresh token is invalid")
	}
	if rt.ClientID != client.ID {
		return nil, oauthErr("invalid_grant", "the refresh token was issued to another client")
	}
	if res := r.PostForm.Get("resource"); res != "" && strings.TrimRight(res, "/") != rt.Resource {
		return nil, oauthErr("invalid_target", "resource must be %s", rt.Resource)
	}
	switch err := b.store.Rotate(r.Context(), rt.Family, rt.Gen); {
	case errors.Is(err, store.ErrReplay):
		b.log.Warn("oauth: refresh token replayed; the sign-in is revoked", "client_id", clip(client.ID, 200), "user", rt.Person.Username)
		b.record(r, audit.RefreshReplay, rt.Person, client.ID, "the refresh token was used twice; every token of the sign-in is revoked", nil)
		return nil, oauthErr("invalid_grant", "the refresh token was used before; every token of this sign-in is revoked, sign in again")
	case errors.Is(err, store.ErrRevoked):
		return nil, oauthErr("invalid_grant", "this sign-in was revoked; sign in again")
	case err != nil:
		return nil, err
	}
	rt.Gen++
	if rt.Person.UpstreamRefresh != "" {
		p, err := b.recheck(r, rt)
		if err != nil {
			return nil, err
		}
		rt.Person = p
	}
	resp, err := b.issue(rt)
	if err == nil {
		b.record(r, audit.TokenRefreshed, rt.Person, client.ID, "", map[string]any{"scope": rt.Scope, "resource": rt.Resource})
	}
	return resp, err
}

// recheck asks the upstream whether rt's person is still signed in there
// and who they are now (groups may have changed). A refusal ends the
// sign-in here too; an upstream that cannot be reached leaves the person
// as they were, so that an IdP outage does not sign everyone out.
func (b *Broker) recheck(r *http.Request, rt refreshToken) (person, error) {
	ctx := r.Context()
	end := func(reason error) (person, error) {
		if err := b.store.Revoke(ctx, rt.Family, time.Unix(rt.Exp, 0)); err != nil {
			return person{}, err
		}
		id := b.withheld(slog.LevelInfo, "oauth: the upstream ended a sign-in", "user", rt.Person.Username, "reason", reason.Error())
		// The reason is the IdP's own error text or a verification error
		// (which may name the IdP's addresses): the log has it.
		why := "clickgate request id " + id
		if authn.Reason(reason) == authn.ReasonDenied {
			why = clip(reason.Error(), 200)
		}
		return person{}, oauthErr("invalid_grant", "the identity provider no longer signs this person in (%s); sign in again", why)
	}
	up, err := b.opts.Upstream.Refresh(ctx, rt.Person.UpstreamRefresh)
	switch {
	case errors.Is(err, upstream.ErrRefused):
		return end(err)
	case err != nil:
		b.log.Warn("oauth: upstream unreachable at refresh; keeping the person as signed in", "user", rt.Person.Username, "error", err)
		return rt.Person, nil
	}
	next := up.RefreshToken
	if next == "" { // not rotated
		next = rt.Person.UpstreamRefresh
	}
	p, err := b.personFor(r, up.AccessToken, next, rt.Person.AuthTime)
	switch {
	case token.IsTemporary(err):
		b.log.Warn("oauth: cannot verify the upstream's token at refresh; keeping the person as signed in", "user", rt.Person.Username, "error", err)
		return rt.Person, nil
	case err != nil:
		return end(err)
	}
	return p, nil
}

// issue mints an access token and the refresh token rt.
func (b *Broker) issue(rt refreshToken) (*tokenResponse, error) {
	now := b.now()
	ttl := b.opts.AccessTTL
	if end := time.Unix(rt.Exp, 0); end.Sub(now) < ttl {
		ttl = end.Sub(now)
	}
	if ttl <= 0 {
		return nil, oauthErr("invalid_grant", "the sign-in has expired; sign in again")
	}
	access, err := b.accessToken(rt, now, ttl)
	if err != nil {
		return nil, err
	}
	refresh, err := b.sealer.Seal(PurposeRefresh, rt, time.Unix(rt.Exp, 0).Sub(now))
	if err != nil {
		return nil, err
	}
	return &tokenResponse{AccessToken: access, TokenType: "Bearer", ExpiresIn: int64(ttl.Seconds()), RefreshToken: refresh, Scope: rt.Scope}, nil
}

// accessToken signs a JWT access token (RFC 9068) for rt's person.
func (b *Broker) accessToken(rt refreshToken, now time.Time, ttl time.Duration) (string, error) {
	kid, key := b.opts.Keys.Signing()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return "", err
	}
	p := rt.Person
	claims := map[string]any{
		"iss": b.issuer, "sub": p.Subject, "aud": append([]string{rt.Resource}, b.opts.Audiences...), "client_id": rt.ClientID,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(), "jti": randomString()[:22],
		"auth_time": p.AuthTime, ClaimUsername: p.Username, ClaimGroups: nonNil(p.Groups), ClaimRoles: nonNil(p.Roles),
	}
	if rt.Scope != "" {
		claims["scope"] = rt.Scope
	}
	if p.Email != "" {
		claims["email"] = p.Email
	}
	if p.EmailVerified != nil {
		claims["email_verified"] = *p.EmailVerified
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
