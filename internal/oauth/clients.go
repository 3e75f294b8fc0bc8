package oauth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/oauth/cimd"
	"github.com/clickgate/clickgate/internal/oauth/seal"
)

// How clickgate knows a client; the consent page says so.
const (
	ClientConfigured = "configured" // broker.clients
	ClientDocument   = "document"   // Client ID Metadata Document
	ClientRegistered = "registered" // dynamic registration (self-asserted)
)

// Client is an application that may ask for tokens.
type Client struct {
	ID           string
	Name         string
	RedirectURIs []string
	Kind         string
	// secret is empty for public clients.
	secret string
}

// Public reports whether the client has no secret (PKCE only).
func (c *Client) Public() bool { return c.secret == "" }

// authenticate checks a presented secret; public clients present none.
func (c *Client) authenticate(secret string) bool {
	if c.Public() {
		return secret == ""
	}
	return subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) == 1
}

// DisplayName is the name to show a person: the client's own name, or
// the host of its client_id for documents.
func (c *Client) DisplayName() string {
	if c.Name != "" {
		return c.Name
	}
	if u, err := url.Parse(c.ID); err == nil && u.Host != "" {
		return u.Host
	}
	return "an unnamed application"
}

// registeredPrefix marks the client ids the broker hands out at
// registration: sealed client metadata, so no store is needed.
const registeredPrefix = "cg1."

// registeredClientTTL is how long a dynamically registered client id
// stays valid; clients register again when it expires.
const registeredClientTTL = 90 * 24 * time.Hour

// registeredClient is what a dynamically registered client id seals.
type registeredClient struct {
	Name         string   `json:"n,omitempty"`
	RedirectURIs []string `json:"r"`
	Confidential bool     `json:"c,omitempty"`
}

// errUnknownClient is all a caller learns about a client id that is
// neither configured, nor a document URL, nor a registration sealed here
// (a forged or tampered one).
var errUnknownClient = errors.New("unknown client_id")

// documentRefused is all a person or a client is told about a refused
// Client ID Metadata Document. The reason (a resolved address, a
// resolver's or the network's error text) would let anyone ask clickgate
// how names resolve and what answers inside its network, so it goes to
// the log only (documentError).
const documentRefused = "its client metadata document could not be fetched or is not valid"

// documentError is a refused Client ID Metadata Document. Its message has
// the whole reason, for clickgate's log; never show it to a browser or a
// client.
type documentError struct {
	clientID string
	err      error
}

func (e *documentError) Error() string {
	return fmt.Sprintf("client_id %s: %v", clip(e.clientID, 200), e.err)
}

func (e *documentError) Unwrap() error { return e.err }

// isDocumentError reports whether a lookup error is a refused document.
func isDocumentError(err error) bool {
	var de *documentError
	return errors.As(err, &de)
}

// clients finds clients by id.
type clients struct {
	configured map[string]*Client
	documents  *cimd.Fetcher
	sealer     *seal.Sealer
}

func (cs *clients) lookup(ctx context.Context, id string) (*Client, error) {
	switch {
	case id == "":
		return nil, errors.New("client_id is missing")
	case len(id) > 4096:
		return nil, errors.New("client_id is too long")
	case cs.configured[id] != nil:
		return cs.configured[id], nil
	case cimd.IsClientID(id):
		md, err := cs.documents.Fetch(ctx, id)
		if err != nil {
			return nil, &documentError{clientID: id, err: err}
		}
		if md.TokenEndpointAuthMethod == "private_key_jwt" {
			return nil, &documentError{clientID: id, err: errors.New("the document asks for private_key_jwt, which clickgate does not support; use none (PKCE)")}
		}
		return &Client{ID: id, Name: md.ClientName, RedirectURIs: md.RedirectURIs, Kind: ClientDocument}, nil
	case strings.HasPrefix(id, registeredPrefix):
		var rc registeredClient
		if err := cs.sealer.Open(PurposeClient, strings.TrimPrefix(id, registeredPrefix), &rc); err != nil {
			if errors.Is(err, seal.ErrExpired) {
				return nil, errors.New("client registration has expired; register again")
			}
			return nil, errUnknownClient
		}
		c := &Client{ID: id, Name: rc.Name, RedirectURIs: rc.RedirectURIs, Kind: ClientRegistered}
		if rc.Confidential {
			c.secret = cs.sealer.Derive(PurposeClient, id)
		}
		return c, nil
	}
	return nil, errUnknownClient
}

// Limits on registration requests.
const (
	maxRegistrationBytes = 16 << 10
	maxRedirectURIs      = 10
	maxRedirectURIBytes  = 2048
	maxClientNameRunes   = 100
)

// registrationRequest is the part of RFC 7591 the broker reads.
type registrationRequest struct {
	RedirectURIs            []string `json:"redirect_uris"`
	ClientName              string   `json:"client_name"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	Scope                   string   `json:"scope"`
}

// registrationResponse is RFC 7591's answer.
type registrationResponse struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientIDExpiresAt       int64    `json:"client_id_expires_at"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	Scope                   string   `json:"scope,omitempty"`
}

// register serves dynamic client registration (RFC 7591).
func (b *Broker) register(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		jsonError(w, http.StatusMethodNotAllowed, "invalid_request", "registration takes POST")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRegistrationBytes))
	if err != nil {
		jsonError(w, http.StatusRequestEntityTooLarge, "invalid_client_metadata", fmt.Sprintf("the registration request is larger than %d bytes", maxRegistrationBytes))
		return
	}
	var req registrationRequest
	if err := json.Unmarshal(body, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "invalid_client_metadata", "the registration request is not a JSON object of client metadata")
		return
	}
	rc, method, err := validateRegistration(&req)
	if err != nil {
		jsonError(w, http.StatusBadRequest, errorCode(err, "invalid_client_metadata"), err.Error())
		return
	}
	sealed, err := b.sealer.Seal(PurposeClient, rc, registeredClientTTL)
	if err != nil {
		b.internalError(w, r, err)
		return
	}
	now := b.now()
	resp := registrationResponse{
		ClientID: registeredPrefix + sealed, ClientIDIssuedAt: now.Unix(),
		ClientIDExpiresAt: now.Add(registeredClientTTL).Unix(), ClientName: rc.Name,
		RedirectURIs: rc.RedirectURIs, TokenEndpointAuthMethod: method,
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		Scope: req.Scope,
	}
	if rc.Confidential {
		resp.ClientSecret = b.sealer.Derive(PurposeClient, resp.ClientID)
		resp.ClientSecretExpiresAt = &resp.ClientIDExpiresAt
	}
	b.log.Info("oauth: client registered", "client_name", rc.Name, "redirect_uris", rc.RedirectURIs, "auth_method", method)
	b.record(r, audit.ClientRegistered, person{}, resp.ClientID, "", map[string]any{"client_name": rc.Name, "redirect_uris": rc.RedirectURIs, "auth_method": method})
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, resp)
}

// codedError carries an OAuth error code with its description.
type codedError struct{ code, desc string }

func (e *codedError) Error() string { return e.desc }

func oauthErr(code, format string, a ...any) error {
	return &codedError{code: code, desc: fmt.Sprintf(format, a...)}
}

// errorCode is err's OAuth error code, or def.
func errorCode(err error, def string) string {
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	return def
}

func validateRegistration(req *registrationRequest) (*registeredClient, string, error) {
	rc := &registeredClient{Name: strings.TrimSpace(req.ClientName)}
	if n := []rune(rc.Name); len(n) > maxClientNameRunes {
		rc.Name = string(n[:maxClientNameRunes])
	}
	if strings.ContainsFunc(rc.Name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, "", oauthErr("invalid_client_metadata", "client_name contains control characters")
	}
	if len(req.RedirectURIs) == 0 {
		return nil, "", oauthErr("invalid_redirect_uri", "redirect_uris is required")
	}
	if len(req.RedirectURIs) > maxRedirectURIs {
		return nil, "", oauthErr("invalid_redirect_uri", "at most %d redirect_uris", maxRedirectURIs)
	}
	for _, u := range req.RedirectURIs {
		if err := checkRegisteredRedirect(u); err != nil {
			return nil, "", err
		}
	}
	rc.RedirectURIs = req.RedirectURIs
	method := req.TokenEndpointAuthMethod
	switch method {
	case "", "none":
		// RFC 7591 defaults to client_secret_basic, but MCP clients are
		// public applications; they get PKCE-only clients unless they ask.
		method = "none"
	case "client_secret_basic", "client_secret_post":
		rc.Confidential = true
	default:
		return nil, "", oauthErr("invalid_client_metadata", "token_endpoint_auth_method %q is not supported (none, client_secret_basic, client_secret_post)", method)
	}
	for _, g := range req.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" {
			return nil, "", oauthErr("invalid_client_metadata", "grant_type %q is not supported (authorization_code, refresh_token)", g)
		}
	}
	for _, rt := range req.ResponseTypes {
		if rt != "code" {
			return nil, "", oauthErr("invalid_client_metadata", "response_type %q is not supported (code)", rt)
		}
	}
	return rc, method, nil
}

// dangerousSchemes can run code or read local files where a browser
// follows them.
var dangerousSchemes = []string{"javascript", "data", "file", "vbscript", "blob", "about"}

// checkRegisteredRedirect allows https, http on loopback (RFC 8252) and
// private-use schemes of native apps (cursor://, vscode://).
func checkRegisteredRedirect(raw string) error {
	if len(raw) > maxRedirectURIBytes {
		return oauthErr("invalid_redirect_uri", "a redirect_uri is longer than %d bytes", maxRedirectURIBytes)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Fragment != "" || strings.Contains(raw, "#") || u.User != nil ||
		strings.ContainsAny(raw, " \t\r\n\\") {
		return oauthErr("invalid_redirect_uri", "redirect_uri %q is not an absolute URL without fragment or user info", raw)
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "https":
		if u.Host == "" {
			return oauthErr("invalid_redirect_uri", "redirect_uri %q has no host", raw)
		}
	case scheme == "http":
		if !IsLoopbackRedirect(raw) {
			return oauthErr("invalid_redirect_uri", "redirect_uri %q: plain http is allowed only on loopback (127.0.0.1, [::1], localhost)", raw)
		}
	case slices.Contains(dangerousSchemes, scheme):
		return oauthErr("invalid_redirect_uri", "redirect_uri scheme %q is not allowed", scheme)
	}
	return nil
}
