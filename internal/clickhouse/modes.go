package clickhouse

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/clickgate/clickgate/internal/identity"
)

// Caller is the person or agent a request is for.
type Caller struct {
	// Token is the caller's own token; only bearer and exchange use it.
	Token     string
	Identity  *identity.Identity
	Principal *identity.Principal
	// EventID names the request's audit event; shared accounts carry it
	// in log_comment, so that query_log joins the audit trail.
	EventID string
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
	// keeps them from each other's sessions and queries, and names the
	// person in log_comment (where supported) and the user agent.
	Shared bool
	// Account is the ClickHouse user the queries run as, for the audit.
	Account string
	// Person is set on shared accounts: who the queries are for.
	Person string
}

// UserAgent is the user agent to send upstream for a client's: on shared
// accounts it names the person, so that query_log's http_user_agent says
// who ran a query on every ClickHouse version.
func (u *Upstream) UserAgent(client string) string {
	if u.Person == "" {
		return client
	}
	person := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, u.Person)
	if client == "" {
		return "clickgate (user " + person + ")"
	}
	return client + " clickgate (user " + person + ")"
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

// attribution names the person on a shared account: quota_key where the
// account's quota is keyed (a setting: ClickHouse refuses client keys
// under any other quota), log_comment where the server has it (20.12) and
// the account may set it (not at readonly = 1, which forbids every
// setting).
type attribution struct {
	quotaKey bool
	// logComment reports whether the server knows log_comment.
	logComment func(ctx context.Context) bool
	// settable asks, once per account, whether it may set log_comment.
	settable func(ctx context.Context, header http.Header) (ok, known bool)
	accounts sync.Map // account → bool: may set log_comment
}

// mayComment reports whether account (signing in with header) may be
// sent log_comment, asking ClickHouse the first time.
func (a *attribution) mayComment(ctx context.Context, account string, header http.Header) bool {
	if a.logComment == nil || !a.logComment(ctx) {
		return false
	}
	if ok, seen := a.accounts.Load(account); seen {
		return ok.(bool)
	}
	ok, known := a.settable(ctx, header)
	if known {
		a.accounts.Store(account, ok)
	}
	return ok
}

func (a *attribution) upstream(ctx context.Context, c *Caller, header http.Header, account string) *Upstream {
	up := &Upstream{Header: header, Shared: true, Account: account, Person: c.Principal.User}
	if a.quotaKey {
		up.Settings = map[string]string{"quota_key": c.Principal.User}
	}
	if a.mayComment(ctx, account, header) {
		comment, _ := json.Marshal(struct {
			User    string   `json:"user"`
			Roles   []string `json:"roles"`
			Via     string   `json:"via"`
			EventID string   `json:"event_id,omitempty"`
		}{c.Principal.User, c.Principal.Roles, "clickgate", c.EventID})
		if up.Settings == nil {
			up.Settings = map[string]string{}
		}
		up.Settings["log_comment"] = string(comment)
	}
	return up
}

// serviceMode sends everything as one service account ("gating"): the
// person is named by attribution.
type serviceMode struct {
	header  http.Header
	account string
	*attribution
}

func (m *serviceMode) Upstream(ctx context.Context, c *Caller) (*Upstream, error) {
	return m.attribution.upstream(ctx, c, m.header, m.account), nil
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
	*attribution
}

func (m *mappedMode) Upstream(ctx context.Context, c *Caller) (*Upstream, error) {
	for i, a := range m.accounts {
		if slices.Contains(c.Principal.Roles, a.Role) {
			return m.attribution.upstream(ctx, c, m.headers[i], a.User), nil
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
	return bearerUpstream(c.Token, c), nil
}
