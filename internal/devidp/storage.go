package devidp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/clickgate/clickgate/internal/keyring"
)

// Lifetimes of the steps of a sign-in.
const (
	authRequestTTL = 10 * time.Minute // from /authorize to the code exchange
	codeTTL        = 2 * time.Minute  // from the redirect with the code to its exchange
	deviceTTL      = 10 * time.Minute // device_code and user_code
	devicePoll     = 5 * time.Second
)

// storage is the provider's state: users and clients from the
// configuration, everything else in memory. Tokens are JWTs that verify by
// signature alone; the records here serve userinfo, introspection,
// revocation and refresh, and are gone after a restart.
type storage struct {
	issuer    string
	users     *directory
	clients   map[string]*client
	keys      *keyring.Ring
	audiences []string
	tokenTTL  time.Duration
	refreshTT time.Duration

	mu        sync.Mutex
	requests  map[string]*authRequest
	codes     map[string]string // code → auth request id
	access    map[string]*accessToken
	refresh   map[string]*refreshToken
	devices   map[string]*deviceEntry // device_code →
	userCodes map[string]string       // user_code → device_code
	lastSweep time.Time
}

var (
	_ op.Storage                        = (*storage)(nil)
	_ op.ClientCredentialsStorage       = (*storage)(nil)
	_ op.TokenExchangeStorage           = (*storage)(nil)
	_ op.DeviceAuthorizationStorage     = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest      = (*storage)(nil)
	_ op.CanGetPrivateClaimsFromRequest = (*storage)(nil)
	_ op.AuthRequest                    = (*authRequest)(nil)
	_ op.RefreshTokenRequest            = (*refreshTokenRequest)(nil)
	_ op.TokenRequest                   = (*clientCredentialsRequest)(nil)
)

func newStorage() *storage {
	return &storage{
		clients:   map[string]*client{},
		requests:  map[string]*authRequest{},
		codes:     map[string]string{},
		access:    map[string]*accessToken{},
		refresh:   map[string]*refreshToken{},
		devices:   map[string]*deviceEntry{},
		userCodes: map[string]string{},
	}
}

func randomID() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// sweep forgets what expired, at most once a minute; s.mu is held.
func (s *storage) sweep(now time.Time) {
	if now.Sub(s.lastSweep) < time.Minute {
		return
	}
	s.lastSweep = now
	for id, r := range s.requests {
		if now.Sub(r.created) > authRequestTTL {
			delete(s.requests, id)
			if r.code != "" {
				delete(s.codes, r.code)
			}
		}
	}
	for id, t := range s.access {
		if now.After(t.expiry) {
			delete(s.access, id)
		}
	}
	for id, t := range s.refresh {
		if now.After(t.expiry) {
			delete(s.refresh, id)
		}
	}
	for dc, d := range s.devices {
		if now.After(d.state.Expires) {
			delete(s.devices, dc)
			delete(s.userCodes, d.userCode)
		}
	}
}

// ---------------------------------------------------------------------------
// Sign-in requests.

type authRequest struct {
	id           string
	created      time.Time
	clientID     string
	redirectURI  string
	state        string
	nonce        string
	scopes       []string
	responseType oidc.ResponseType
	responseMode oidc.ResponseMode
	challenge    *oidc.CodeChallenge
	audience     []string

	// Set by a successful sign-in.
	subject  string
	authTime time.Time
	done     bool
	// Set when the code is issued.
	code       string
	codeIssued time.Time
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAudience() []string                 { return a.audience }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }
func (a *authRequest) GetAMR() []string {
	if a.done {
		return []string{"pwd"}
	}
	return nil
}

// audienceFor is the aud of a person's tokens for a client: the client
// (as OpenID Connect wants for ID tokens) and the configured audiences.
func (s *storage) audienceFor(clientID string) []string {
	aud := []string{clientID}
	for _, a := range s.audiences {
		if !slices.Contains(aud, a) {
			aud = append(aud, a)
		}
	}
	return aud
}

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired().WithDescription("this identity provider keeps no sign-in session; prompt=none cannot succeed")
	}
	c, ok := s.clients[req.ClientID]
	if !ok {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client")
	}
	if !c.can(oidc.GrantTypeCode) {
		return nil, oidc.ErrUnauthorizedClient().WithDescription("this client may not use the authorization code grant")
	}
	var challenge *oidc.CodeChallenge
	switch {
	case req.CodeChallenge != "" && req.CodeChallengeMethod != oidc.CodeChallengeMethodS256:
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	case req.CodeChallenge != "":
		challenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: oidc.CodeChallengeMethodS256}
	case c.public:
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send code_challenge with code_challenge_method=S256")
	}
	now := time.Now()
	r := &authRequest{
		id:           randomID(),
		created:      now,
		clientID:     req.ClientID,
		redirectURI:  req.RedirectURI,
		state:        req.State,
		nonce:        req.Nonce,
		scopes:       slices.Clone([]string(req.Scopes)),
		responseType: req.ResponseType,
		responseMode: req.ResponseMode,
		challenge:    challenge,
		audience:     s.audienceFor(req.ClientID),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	s.requests[r.id] = r
	return r.copy(), nil
}

func (a *authRequest) copy() *authRequest {
	c := *a
	return &c
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok || time.Since(r.created) > authRequestTTL {
		return nil, oidc.ErrInvalidRequest().WithDescription("the sign-in request is unknown or expired; start again")
	}
	return r.copy(), nil
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[s.codes[code]]
	if !ok || r.code != code || time.Since(r.codeIssued) > codeTTL {
		return nil, errors.New("the code is unknown, used or expired")
	}
	return r.copy(), nil
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok || !r.done || r.code != "" {
		return oidc.ErrInvalidRequest().WithDescription("the sign-in request is unknown, not signed in or already answered")
	}
	r.code, r.codeIssued = code, time.Now()
	s.codes[code] = id
	return nil
}

func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.requests[id]; ok {
		delete(s.codes, r.code)
		delete(s.requests, id)
	}
	return nil
}

// completeLogin marks a sign-in request as done by u. It fails for an
// unknown or expired request, or one already done.
func (s *storage) completeLogin(id string, u *user) (clientID string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok || time.Since(r.created) > authRequestTTL || r.done {
		return "", errors.New("the sign-in request is unknown, expired or already used")
	}
	r.subject, r.authTime, r.done = u.username, time.Now(), true
	return r.clientID, nil
}

// pendingRequest reports whether id is a sign-in request waiting for a
// person, and for which client.
func (s *storage) pendingRequest(id string) (clientID string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok || r.done || time.Since(r.created) > authRequestTTL {
		return "", false
	}
	return r.clientID, true
}

// ---------------------------------------------------------------------------
// Tokens.

type accessToken struct {
	id       string
	clientID string
	subject  string
	audience []string
	scopes   []string
	issued   time.Time
	expiry   time.Time
}

type refreshToken struct {
	token    string
	clientID string
	subject  string
	audience []string
	scopes   []string
	amr      []string
	authTime time.Time
	expiry   time.Time
	accessID string
}

// refreshTokenRequest is what a refresh token stands for.
type refreshTokenRequest struct{ t refreshToken }

func (r *refreshTokenRequest) GetAMR() []string             { return r.t.amr }
func (r *refreshTokenRequest) GetAudience() []string        { return r.t.audience }
func (r *refreshTokenRequest) GetAuthTime() time.Time       { return r.t.authTime }
func (r *refreshTokenRequest) GetClientID() string          { return r.t.clientID }
func (r *refreshTokenRequest) GetScopes() []string          { return r.t.scopes }
func (r *refreshTokenRequest) GetSubject() string           { return r.t.subject }
func (r *refreshTokenRequest) SetCurrentScopes(sc []string) { r.t.scopes = sc }

// clientCredentialsRequest is a service's token request.
type clientCredentialsRequest struct {
	clientID string
	audience []string
	scopes   []string
}

func (r *clientCredentialsRequest) GetSubject() string    { return r.clientID }
func (r *clientCredentialsRequest) GetAudience() []string { return r.audience }
func (r *clientCredentialsRequest) GetScopes() []string   { return r.scopes }
func (r *clientCredentialsRequest) GetClientID() string   { return r.clientID }

// requestInfo is who a token request is for and by which client.
func requestInfo(req op.TokenRequest) (clientID string, amr []string, authTime time.Time) {
	switch r := req.(type) {
	case *authRequest:
		return r.clientID, r.GetAMR(), r.authTime
	case *refreshTokenRequest:
		return r.t.clientID, r.t.amr, r.t.authTime
	case *op.DeviceAuthorizationState:
		return r.ClientID, r.AMR, r.AuthTime
	case op.TokenExchangeRequest:
		return r.GetClientID(), nil, r.GetAuthTime()
	case *clientCredentialsRequest:
		return r.clientID, nil, time.Now()
	}
	return "", nil, time.Time{}
}

// newAccess records an access token; s.mu is held.
func (s *storage) newAccess(req op.TokenRequest, clientID string) *accessToken {
	now := time.Now()
	s.sweep(now)
	t := &accessToken{
		id:       randomID(),
		clientID: clientID,
		subject:  req.GetSubject(),
		audience: slices.Clone(req.GetAudience()),
		scopes:   slices.Clone(req.GetScopes()),
		issued:   now,
		expiry:   now.Add(s.tokenTTL),
	}
	s.access[t.id] = t
	return t
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	clientID, _, _ := requestInfo(req)
	if clientID == "" {
		return "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.newAccess(req, clientID)
	return t.id, t.expiry, nil
}

func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	clientID, amr, authTime := requestInfo(req)
	if clientID == "" {
		return "", "", time.Time{}, oidc.ErrUnsupportedGrantType()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if current != "" {
		// Rotation: a refresh token is used once.
		old, ok := s.refresh[current]
		if !ok || time.Now().After(old.expiry) || old.clientID != clientID {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("the refresh token is unknown, used or expired")
		}
		delete(s.refresh, current)
		delete(s.access, old.accessID)
	}
	at := s.newAccess(req, clientID)
	rt := &refreshToken{
		token:    randomID(),
		clientID: clientID,
		subject:  req.GetSubject(),
		audience: at.audience,
		scopes:   at.scopes,
		amr:      amr,
		authTime: authTime,
		expiry:   time.Now().Add(s.refreshTT),
		accessID: at.id,
	}
	s.refresh[rt.token] = rt
	return at.id, rt.token, at.expiry, nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refresh[token]
	if !ok || time.Now().After(t.expiry) {
		return nil, errors.New("the refresh token is unknown, used or expired")
	}
	c := *t
	c.scopes = slices.Clone(t.scopes)
	return &refreshTokenRequest{t: c}, nil
}

func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.access {
		if t.subject == userID && t.clientID == clientID {
			delete(s.access, id)
		}
	}
	for id, t := range s.refresh {
		if t.subject == userID && t.clientID == clientID {
			delete(s.refresh, id)
		}
	}
	return nil
}

func (s *storage) RevokeToken(_ context.Context, tokenOrID, _ string, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.access[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("the token was not issued to this client")
		}
		delete(s.access, tokenOrID)
		return nil
	}
	if t, ok := s.refresh[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("the token was not issued to this client")
		}
		delete(s.refresh, tokenOrID)
		delete(s.access, t.accessID)
	}
	return nil // unknown tokens are already as good as revoked (RFC 7009)
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refresh[token]
	if !ok || t.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return t.subject, t.token, nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	kid, key := s.keys.Signing()
	return &signingKey{id: kid, key: key}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{keyring.Algorithm}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	var keys []op.Key
	for _, k := range s.keys.Public() {
		keys = append(keys, &publicKey{k})
	}
	return keys, nil
}

// ---------------------------------------------------------------------------
// Clients and claims.

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if c, ok := s.clients[id]; ok {
		return c, nil
	}
	return nil, errors.New("unknown client")
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || c.public || !c.secret.matches(secret) {
		return errors.New("wrong client id or secret")
	}
	return nil
}

// subjectClaims are the claims about a token's subject: a person, or the
// service of a client credentials token.
func (s *storage) subjectClaims(sub string) map[string]any {
	if u := s.users.user(sub); u != nil {
		return u.claims()
	}
	if c, ok := s.clients[sub]; ok {
		return map[string]any{"preferred_username": c.id, "groups": append([]string{}, c.groups...)}
	}
	return map[string]any{}
}

func (s *storage) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	claims := s.subjectClaims(req.GetSubject())
	if sc := req.GetScopes(); len(sc) > 0 {
		claims["scope"] = strings.Join(sc, " ")
	}
	return claims, nil
}

func (s *storage) GetPrivateClaimsFromScopes(_ context.Context, userID, _ string, scopes []string) (map[string]any, error) {
	claims := s.subjectClaims(userID)
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	return claims, nil
}

// setUserinfo fills userinfo with everything known about sub.
func (s *storage) setUserinfo(info *oidc.UserInfo, sub string) error {
	info.Subject = sub
	if u := s.users.user(sub); u != nil {
		info.PreferredUsername = u.username
		info.Name = u.name
		if u.email != "" {
			info.Email = u.email
			info.EmailVerified = oidc.Bool(u.emailVerified)
		}
		info.AppendClaims("groups", append([]string{}, u.groups...))
		return nil
	}
	if c, ok := s.clients[sub]; ok {
		info.PreferredUsername = c.id
		info.AppendClaims("groups", append([]string{}, c.groups...))
		return nil
	}
	return errors.New("unknown subject")
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	return s.setUserinfo(info, req.GetSubject())
}

// liveAccess returns the record of an access token that is still valid.
func (s *storage) liveAccess(tokenID, subject string) (*accessToken, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.access[tokenID]
	if !ok || t.subject != subject || time.Now().After(t.expiry) {
		return nil, false
	}
	c := *t
	return &c, true
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	if _, ok := s.liveAccess(tokenID, subject); !ok {
		return errors.New("the access token is unknown, revoked or expired")
	}
	return s.setUserinfo(info, subject)
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, _ string) error {
	t, ok := s.liveAccess(tokenID, subject)
	if !ok {
		return errors.New("the access token is unknown, revoked or expired")
	}
	info := new(oidc.UserInfo)
	if err := s.setUserinfo(info, subject); err != nil {
		return err
	}
	resp.SetUserInfo(info)
	resp.Scope = t.scopes
	resp.ClientID = t.clientID
	resp.TokenType = oidc.BearerToken
	resp.Expiration = oidc.FromTime(t.expiry)
	resp.IssuedAt = oidc.FromTime(t.issued)
	resp.NotBefore = oidc.FromTime(t.issued)
	resp.Audience = t.audience
	resp.Issuer = s.issuer
	resp.JWTID = t.id
	resp.Username = info.PreferredUsername
	return nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile client authentication is not supported")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("the JWT profile grant is not supported")
}

func (s *storage) Health(context.Context) error { return nil }

// ---------------------------------------------------------------------------
// Client credentials.

func (s *storage) ClientCredentials(_ context.Context, id, secret string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok || c.public || !c.secret.matches(secret) {
		return nil, errors.New("wrong client id or secret")
	}
	if !c.can(oidc.GrantTypeClientCredentials) {
		return nil, oidc.ErrUnauthorizedClient().WithDescription("this client may not use the client credentials grant")
	}
	return c, nil
}

func (s *storage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, errors.New("unknown client")
	}
	aud := c.audiences
	if len(aud) == 0 {
		aud = s.audiences
	}
	return &clientCredentialsRequest{clientID: id, audience: slices.Clone(aud), scopes: scopes}, nil
}

// ---------------------------------------------------------------------------
// Token exchange (RFC 8693): a client trades a person's access or ID token
// for an access token with another audience, e.g. ClickHouse's (clickgate's
// exchange mode). No impersonation, no actor tokens, no refresh tokens.

// allowedAudience reports whether a token may be minted for aud.
func (s *storage) allowedAudience(aud string) bool {
	if slices.Contains(s.audiences, aud) {
		return true
	}
	if _, ok := s.clients[aud]; ok {
		return true
	}
	for _, c := range s.clients {
		if slices.Contains(c.audiences, aud) {
			return true
		}
	}
	return false
}

func (s *storage) ValidateTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) error {
	c, ok := s.clients[req.GetClientID()]
	if !ok || !c.can(oidc.GrantTypeTokenExchange) {
		return oidc.ErrUnauthorizedClient().WithDescription("this client may not use token exchange")
	}
	switch req.GetExchangeSubjectTokenType() {
	case oidc.AccessTokenType, oidc.IDTokenType:
	default:
		return oidc.ErrInvalidRequest().WithDescription("subject_token_type must be an access token or an ID token of this provider")
	}
	if req.GetExchangeActor() != "" || req.GetExchangeActorTokenType() != "" {
		return oidc.ErrInvalidRequest().WithDescription("actor tokens are not supported")
	}
	switch req.GetRequestedTokenType() {
	case "":
		req.SetRequestedTokenType(oidc.AccessTokenType)
	case oidc.AccessTokenType, oidc.IDTokenType:
	default:
		return oidc.ErrInvalidRequest().WithDescription("requested_token_type must be an access token or an ID token")
	}
	sub := req.GetExchangeSubject()
	if s.users.user(sub) == nil {
		if _, ok := s.clients[sub]; !ok {
			return oidc.ErrInvalidRequest().WithDescription("subject_token names nobody this provider knows")
		}
	}
	if req.GetExchangeSubjectTokenType() == oidc.AccessTokenType {
		if _, ok := s.liveAccess(req.GetExchangeSubjectTokenIDOrToken(), sub); !ok {
			return oidc.ErrInvalidRequest().WithDescription("subject_token is revoked, expired or from before the provider restarted")
		}
	}
	if len(req.GetAudience()) == 0 {
		return oidc.ErrInvalidTarget().WithDescription("audience is required: name the service the token is for")
	}
	for _, a := range req.GetAudience() {
		if !s.allowedAudience(a) {
			return oidc.ErrInvalidTarget().WithDescription("audience %q is not one this provider issues tokens for", a)
		}
	}
	for _, r := range req.GetResourses() {
		if !slices.Contains(req.GetAudience(), r) {
			return oidc.ErrInvalidTarget().WithDescription("resource %q is not among the requested audiences", r)
		}
	}
	// Down-scoping only: the new token has at most the subject token's scopes.
	var had []string
	if sc, ok := req.GetExchangeSubjectTokenClaims()["scope"].(string); ok {
		had = strings.Fields(sc)
	}
	if len(req.GetScopes()) == 0 {
		req.SetCurrentScopes(had)
	} else {
		for _, sc := range req.GetScopes() {
			if !slices.Contains(had, sc) {
				return oidc.ErrInvalidScope().WithDescription("scope %q is not in the subject token", sc)
			}
		}
	}
	return nil
}

func (s *storage) CreateTokenExchangeRequest(context.Context, op.TokenExchangeRequest) error {
	return nil
}

func (s *storage) GetPrivateClaimsFromTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) (map[string]any, error) {
	claims := s.subjectClaims(req.GetSubject())
	if sc := req.GetScopes(); len(sc) > 0 {
		claims["scope"] = strings.Join(sc, " ")
	}
	return claims, nil
}

func (s *storage) SetUserinfoFromTokenExchangeRequest(_ context.Context, info *oidc.UserInfo, req op.TokenExchangeRequest) error {
	return s.setUserinfo(info, req.GetSubject())
}

// ---------------------------------------------------------------------------
// Device authorization (RFC 8628).

type deviceEntry struct {
	userCode string
	state    op.DeviceAuthorizationState
}

func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	if _, ok := s.clients[clientID]; !ok {
		return errors.New("unknown client")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(time.Now())
	if _, ok := s.userCodes[userCode]; ok {
		return op.ErrDuplicateUserCode
	}
	s.devices[deviceCode] = &deviceEntry{userCode: userCode, state: op.DeviceAuthorizationState{
		ClientID: clientID,
		Audience: slices.Clone(s.audiences),
		Scopes:   scopes,
		Expires:  expires,
	}}
	s.userCodes[userCode] = deviceCode
	return nil
}

// GetDeviceAuthorizatonState answers the device's polls. Once approved,
// the state is handed out once: the device code cannot be redeemed twice.
func (s *storage) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[deviceCode]
	if !ok || d.state.ClientID != clientID {
		return nil, errors.New("unknown device code")
	}
	st := d.state
	st.Audience = slices.Clone(d.state.Audience)
	if st.Done || time.Now().After(st.Expires) {
		delete(s.devices, deviceCode)
		delete(s.userCodes, d.userCode)
	}
	return &st, nil
}

// normalizeUserCode turns what a person typed into the stored form
// (BCDF-GHJK): case, spaces and dashes do not matter.
func normalizeUserCode(in string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(in) {
		if r >= 'A' && r <= 'Z' {
			b.WriteRune(r)
		}
	}
	code := b.String()
	if len(code) == 8 {
		return code[:4] + "-" + code[4:]
	}
	return code
}

// pendingDevice returns the client and scopes a user code stands for, if
// it is waiting for approval.
func (s *storage) pendingDevice(userCode string) (clientID string, scopes []string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, found := s.devices[s.userCodes[normalizeUserCode(userCode)]]
	if !found || d.state.Done || d.state.Denied || time.Now().After(d.state.Expires) {
		return "", nil, false
	}
	return d.state.ClientID, slices.Clone(d.state.Scopes), true
}

// decideDevice approves (as u) or denies a waiting device authorization.
func (s *storage) decideDevice(userCode string, u *user, approve bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, found := s.devices[s.userCodes[normalizeUserCode(userCode)]]
	if !found || d.state.Done || d.state.Denied || time.Now().After(d.state.Expires) {
		return errors.New("the code is unknown, expired or already used")
	}
	if !approve {
		d.state.Denied = true
		return nil
	}
	d.state.Done = true
	d.state.Subject = u.username
	d.state.AMR = []string{"pwd"}
	d.state.AuthTime = time.Now()
	return nil
}
