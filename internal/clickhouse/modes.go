package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/clickgate/clickgate/internal/identity"
)

// Caller is the person or agent a request is for.
type Caller struct {
	// Token is the caller's own token; only bearer and exchange use it.
	Token     string
	Identity  *identity.Identity
	Principal *identity.Principal
}

// Upstream is what a request needs to reach ClickHouse as a caller.
type Upstream struct {
	// Header is set on the upstream request (Authorization).
	Header http.Header
	// Settings are URL parameters the client cannot override.
	Settings map[string]string
	// QueryPrefix goes before the query text (impersonate's EXECUTE AS).
	QueryPrefix string
	// Shared means other people reach ClickHouse as the same account
	// (service, mapped): ClickHouse cannot tell them apart, so clickgate
	// keeps them from each other's sessions and queries.
	Shared bool
}

// A Mode turns a caller into upstream credentials.
type Mode interface {
	Upstream(ctx context.Context, c *Caller) (*Upstream, error)
}

// Error is a refusal to reach ClickHouse for a caller, with the HTTP
// status and ClickHouse error code a client should see.
type Error struct {
	Status int
	Code   int
	Name   string // ClickHouse's error name, e.g. ACCESS_DENIED
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// ClickHouse error codes clickgate answers with.
const (
	CodeAuthenticationFailed = 516
	CodeAccessDenied         = 497
	CodeNetworkError         = 210
)

func accessDenied(format string, args ...any) *Error {
	return &Error{Status: http.StatusForbidden, Code: CodeAccessDenied, Name: "ACCESS_DENIED", Msg: fmt.Sprintf(format, args...)}
}

func basic(user, password string) http.Header {
	r := http.Request{Header: http.Header{}}
	r.SetBasicAuth(user, password)
	return r.Header
}

// serviceMode sends everything as one service account ("gating"): the
// real identity goes into quota_key and, where supported, log_comment.
type serviceMode struct {
	header     http.Header
	logComment func(ctx context.Context) bool
}

func (m *serviceMode) Upstream(ctx context.Context, c *Caller) (*Upstream, error) {
	settings := map[string]string{"quota_key": c.Principal.User}
	if m.logComment(ctx) {
		comment, _ := json.Marshal(map[string]any{"clickgate_user": c.Principal.User, "roles": c.Principal.Roles})
		settings["log_comment"] = string(comment)
	}
	return &Upstream{Header: m.header, Settings: settings, Shared: true}, nil
}

// Account is a static ClickHouse account chosen by role.
type Account struct {
	Role     string
	User     string
	Password string
}

// mappedMode picks the first account whose role the principal holds.
type mappedMode struct {
	accounts []Account
	headers  []http.Header
}

func (m *mappedMode) Upstream(_ context.Context, c *Caller) (*Upstream, error) {
	for i, a := range m.accounts {
		if slices.Contains(c.Principal.Roles, a.Role) {
			return &Upstream{Header: m.headers[i], Shared: true}, nil
		}
	}
	roles := make([]string, len(m.accounts))
	for i, a := range m.accounts {
		roles[i] = a.Role
	}
	return nil, accessDenied("clickgate: %s has none of the roles that map to a ClickHouse account (%v); their roles are %v",
		c.Principal.User, roles, c.Principal.Roles)
}

// bearerMode forwards the caller's own token, but only to its audience.
type bearerMode struct {
	audience string
}

func (m *bearerMode) Upstream(_ context.Context, c *Caller) (*Upstream, error) {
	if !slices.Contains(c.Identity.Audience, m.audience) {
		return nil, accessDenied("clickgate: the token is not meant for ClickHouse (its audience lacks %q), so it is not passed on; ask the IdP for a token with that audience, or use exchange mode", m.audience)
	}
	return &Upstream{Header: http.Header{"Authorization": {"Bearer " + c.Token}}}, nil
}
