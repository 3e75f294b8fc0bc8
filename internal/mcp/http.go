package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/clickhouse"
)

// Authenticator resolves credentials to a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, c authn.Credentials, iface string) (*authn.Result, error)
}

// HTTPOptions configure the Streamable HTTP endpoint as an OAuth
// protected resource.
type HTTPOptions struct {
	Auth Authenticator
	// Resource is this endpoint's identifier: public_url + /mcp.
	Resource string
	// MetadataURL is where the protected resource metadata is served.
	MetadataURL string
	// Audiences are accepted besides Resource.
	Audiences []string
	// AuthorizationServers are named in the metadata.
	AuthorizationServers []string
	// ReadScope and WriteScope, when set, are required per tool class.
	ReadScope, WriteScope string
	// AllowedOrigins may send browser requests besides Resource's origin.
	AllowedOrigins []string
}

// TokenInfo.Extra keys: the *clickhouse.Caller, and the context of the
// HTTP request carrying the call.
const (
	tokenInfoCaller  = "clickgate.caller"
	tokenInfoRequest = "clickgate.request"
	tokenInfoRemote  = "clickgate.remote" // the client's address, host:port
)

// maxRequestBytes bounds a JSON-RPC request body.
const maxRequestBytes = 4 << 20

// HTTPHandler serves MCP over Streamable HTTP (stateless: every revision
// from 2025-03-26 to 2026-07-28) behind token authentication.
func (s *Server) HTTPHandler(o HTTPOptions) http.Handler {
	handler := func(jsonResponse bool) http.Handler {
		return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.sdk },
			&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: jsonResponse, Logger: sdkLogger(s.opt.Logger), PropagateRequestCancellation: true,
				// clickgate checks Origin itself, against public_url and
				// server.allowed_origins, and may serve on a public address.
				DisableLocalhostProtection: true})
	}
	// A request carrying a progress token is answered as an SSE stream,
	// so its progress notifications reach the client (progress.go).
	sdk := byProgressToken(handler(true), handler(false))
	// The SDK learns the caller through its TokenInfo; clickgate has
	// already authenticated the request by then, expiry and leeway
	// included, so no expiry is given for the SDK to check again (it
	// would refuse without clickgate's leeway and challenge header).
	withTokenInfo := auth.RequireBearerToken(func(ctx context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
		c, ok := ctx.Value(callerKey{}).(*clickhouse.Caller)
		if !ok {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{UserID: c.Principal.User,
			Extra: map[string]any{tokenInfoCaller: c, tokenInfoRequest: ctx, tokenInfoRemote: r.RemoteAddr}}, nil
	}, &auth.RequireBearerTokenOptions{AllowMissingExpiration: true})(sdk)

	allowedOrigins := slices.Clone(o.AllowedOrigins)
	if u, err := url.Parse(o.Resource); err == nil {
		allowedOrigins = append(allowedOrigins, u.Scheme+"://"+u.Host)
	}
	challenge := func(w http.ResponseWriter, status int, errCode, desc, scope string) {
		params := []string{}
		if errCode != "" {
			params = append(params, fmt.Sprintf("error=%q", errCode), fmt.Sprintf("error_description=%q", authn.HeaderSafe(desc)))
		}
		params = append(params, fmt.Sprintf("resource_metadata=%q", o.MetadataURL))
		if scope != "" {
			params = append(params, fmt.Sprintf("scope=%q", scope))
		}
		w.Header().Set("WWW-Authenticate", "Bearer "+strings.Join(params, ", "))
		http.Error(w, "clickgate: "+desc, status)
	}

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" && !slices.Contains(allowedOrigins, origin) {
			// DNS rebinding defence: a page on another origin must not
			// reach this endpoint through a person's browser.
			http.Error(w, "clickgate: Origin "+origin+" is not allowed; add it to server.allowed_origins", http.StatusForbidden)
			return
		}
		creds, err := authn.FromRequest(r)
		if err != nil || creds.User != "" {
			challenge(w, http.StatusUnauthorized, "", "send Authorization: Bearer <token> (an OAuth access token for "+o.Resource+")", o.ReadScope)
			return
		}
		res, err := o.Auth.Authenticate(r.Context(), r, creds, audit.InterfaceMCP)
		if err != nil {
			status := authn.Status(err)
			code := "invalid_token"
			if status == http.StatusServiceUnavailable {
				code = "temporarily_unavailable"
			}
			challenge(w, status, code, err.Error(), o.ReadScope)
			return
		}
		if !slices.ContainsFunc(res.Identity.Audience, func(a string) bool { return a == o.Resource || slices.Contains(o.Audiences, a) }) {
			challenge(w, http.StatusUnauthorized, "invalid_token", "the token's audience is not "+o.Resource+"; a token for another service (ClickHouse, say) is not accepted here", o.ReadScope)
			return
		}
		msgs := peek(r)
		if need := neededScope(msgs, o); need != "" && !slices.Contains(tokenScopes(res.Identity.Claims), need) {
			challenge(w, http.StatusForbidden, "insufficient_scope", "this call needs the scope "+need, need)
			return
		}
		caller := &clickhouse.Caller{Token: creds.Token, Identity: res.Identity, Principal: res.Principal}
		ctx := context.WithValue(context.WithValue(r.Context(), callerKey{}, caller), peekKey{}, msgs)
		answers := &spliced{}
		withTokenInfo.ServeHTTP(&splicer{ResponseWriter: w, a: answers}, r.WithContext(withSpliced(ctx, answers)))
	})
}

// peeked is what the HTTP layer needs of a request's JSON-RPC messages
// (one, or a batch), read once.
type peeked struct {
	write    bool // a message calls a write tool
	progress bool // a message carries params._meta.progressToken
}

type peekKey struct{}

// peek reads a POST body's messages, leaving the body for the SDK.
func peek(r *http.Request) peeked {
	var p peeked
	if r.Method != http.MethodPost || r.Body == nil {
		return p
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBytes))
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return p
	}
	type message struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
			Meta struct {
				ProgressToken json.RawMessage `json:"progressToken"`
			} `json:"_meta"`
		} `json:"params"`
	}
	var batch []message
	if body = bytes.TrimSpace(body); len(body) > 0 && body[0] == '[' {
		_ = json.Unmarshal(body, &batch)
	} else {
		var one message
		if json.Unmarshal(body, &one) == nil {
			batch = []message{one}
		}
	}
	for _, m := range batch {
		p.write = p.write || (m.Method == "tools/call" && writeTools[m.Params.Name])
		t := bytes.TrimSpace(m.Params.Meta.ProgressToken)
		p.progress = p.progress || (len(t) > 0 && !bytes.Equal(t, []byte("null")))
	}
	return p
}

// neededScope is the scope a request needs: the write scope when a
// message (of a batch too) calls a write tool, else the read scope.
func neededScope(p peeked, o HTTPOptions) string {
	if p.write && o.WriteScope != "" {
		return o.WriteScope
	}
	return o.ReadScope
}

// tokenScopes reads OAuth scopes from "scope" (space separated) or "scp".
func tokenScopes(claims map[string]any) []string {
	switch v := claims["scope"].(type) {
	case string:
		return strings.Fields(v)
	}
	var out []string
	if list, ok := claims["scp"].([]any); ok {
		for _, s := range list {
			if str, ok := s.(string); ok {
				out = append(out, str)
			}
		}
	}
	return out
}

// MetadataHandler serves RFC 9728 protected resource metadata.
func MetadataHandler(o HTTPOptions) http.Handler {
	var scopes []string
	for _, s := range []string{o.ReadScope, o.WriteScope} {
		if s != "" && !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	return auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
		Resource:               o.Resource,
		AuthorizationServers:   o.AuthorizationServers,
		ScopesSupported:        scopes,
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "ClickHouse through clickgate",
	})
}
