// Package authn is the one path from a request's credentials to a
// ClickHouse principal: token → identity → principal, with the session
// log and metrics. Every entry point (auth endpoint, whoami, gateway, MCP)
// authenticates through it.
package authn

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/token"
)

// Authenticator verifies tokens and resolves principals.
type Authenticator struct {
	verifier  *token.Verifier
	directory *identity.Directory
	log       *audit.Log
	attempts  *prometheus.CounterVec
	// clickhouse says, per processor, which tokens reach ClickHouse.
	clickhouse map[string]Audiences
	// seen holds the tokens whose LoginSuccess was recorded lately, by
	// hash and interface; nil records every request's.
	seen *expirable.LRU[seenKey, struct{}]
}

type seenKey struct {
	token [sha256.Size]byte
	iface string
}

// RecordLoginsPerToken records one LoginSuccess per token and interface
// in each period (the first use, then again after period), instead of one
// per request: the Query and ToolCall events name the person of every
// request already. LoginFailure is recorded for every request.
func (a *Authenticator) RecordLoginsPerToken(period time.Duration) {
	a.seen = expirable.NewLRU[seenKey, struct{}](100_000, nil, period)
}

// recorded reports whether a LoginSuccess for token on iface was recorded
// within the period, and counts this one as recorded if not.
func (a *Authenticator) recorded(token, iface string) bool {
	if a.seen == nil {
		return false
	}
	k := seenKey{sha256.Sum256([]byte(token)), iface}
	if a.seen.Contains(k) {
		return true
	}
	a.seen.Add(k, struct{}{})
	return false
}

// New returns an Authenticator; reg may be nil (no metrics). Until
// AdmitToClickHouse is called it admits no token to ClickHouse.
func New(v *token.Verifier, d *identity.Directory, log *audit.Log, reg prometheus.Registerer) *Authenticator {
	a := &Authenticator{verifier: v, directory: d, log: log}
	a.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clickgate_auth_attempts_total",
		Help: "Authentication attempts by interface, processor and result (success or the refusal reason).",
	}, []string{"interface", "processor", "result"})
	if reg != nil {
		reg.MustRegister(a.attempts)
	}
	return a
}

// Result is a successful authentication.
type Result struct {
	Identity  *identity.Identity
	Principal *identity.Principal
}

// ReasonDenied is the refusal reason for a valid token that the directory
// policy refuses.
const ReasonDenied token.Reason = "denied"

// ReasonUserMismatch is the refusal reason for a valid token presented
// with a user name that is not its principal's.
const ReasonUserMismatch token.Reason = "user_mismatch"

// ErrUserMismatch reports credentials whose user part names someone else.
var ErrUserMismatch = errors.New("user mismatch")

// Credentials are what a request presents: a token and, with Basic, the
// user it claims to be.
type Credentials struct {
	Token string
	// User, when not empty, must equal the principal's ClickHouse user.
	User string
}

// Authenticate resolves c for request r arriving on iface and writes a
// session log record (for a success, only on a token's first use when
// RecordLoginsPerToken says so).
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request, c Credentials, iface string) (*Result, error) {
	return a.AuthenticateClient(ctx, Client{Address: r.RemoteAddr, UserAgent: r.UserAgent()}, c, iface)
}

// Client is where credentials came from, for the session log: the
// remote address (host:port) and what the client calls itself (an HTTP
// User-Agent, or a native client's name and version).
type Client struct {
	Address   string
	UserAgent string
}

// AuthenticateClient is Authenticate for credentials that did not come in
// an HTTP request (the native protocol's Hello).
func (a *Authenticator) AuthenticateClient(ctx context.Context, cl Client, c Credentials, iface string) (*Result, error) {
	res, err := a.resolve(ctx, c.Token)
	// The processor that proved the token, also when policy then refuses it.
	processor := ""
	if res != nil {
		processor = res.Identity.Processor
	}
	if err == nil && reachesClickHouse(iface) {
		err = a.admitToClickHouse(res.Identity)
	}
	if err == nil && c.User != "" && c.User != res.Principal.User {
		err = fmt.Errorf("%w: the token is for ClickHouse user %q, not %q", ErrUserMismatch, res.Principal.User, clip(c.User, 256))
	}
	if err != nil {
		res = nil
	}
	rec := audit.Record{Interface: iface}
	rec.ClientAddress, rec.ClientPort = SplitAddr(cl.Address)
	rec.HTTPUserAgent = cl.UserAgent // the log bounds client text
	result := "success"
	if err != nil {
		rec.Type = audit.LoginFailure
		rec.User = c.User
		rec.FailureReason = err.Error()
		result = string(Reason(err))
		var te *token.Error
		if errors.As(err, &te) {
			processor = te.Processor
		}
	} else {
		rec.Type = audit.LoginSuccess
		rec.User, rec.Subject, rec.Roles = res.Principal.User, res.Principal.Subject, res.Principal.Roles
	}
	rec.Processor = processor
	if err != nil || !a.recorded(c.Token, iface) {
		a.log.Write(rec)
	}
	a.attempts.WithLabelValues(iface, processor, result).Inc()
	return res, err
}

func (a *Authenticator) resolve(ctx context.Context, raw string) (*Result, error) {
	id, err := a.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	p, err := a.directory.Principal(id)
	if err != nil {
		// The identity is kept for the record of who was refused.
		return &Result{Identity: id}, err
	}
	return &Result{Identity: id, Principal: p}, nil
}

// Ready reports, per processor, whether its IdP is reachable.
func (a *Authenticator) Ready(ctx context.Context) map[string]error {
	return a.verifier.Ready(ctx)
}

// Reason classifies an Authenticate error.
func Reason(err error) token.Reason {
	if errors.Is(err, identity.ErrDenied) {
		return ReasonDenied
	}
	if errors.Is(err, ErrUserMismatch) {
		return ReasonUserMismatch
	}
	if errors.Is(err, ErrNotForClickHouse) {
		return token.ReasonAudience
	}
	return token.ReasonOf(err)
}

// ErrNoCredentials means the request carried no token.
var ErrNoCredentials = errors.New("no credentials: send Authorization: Bearer <token>, or Basic with the token as password")

// FromRequest returns the credentials a request carries:
// "Authorization: Bearer <token>", or "Authorization: Basic" with the
// token as password and the user part empty or the ClickHouse user.
func FromRequest(r *http.Request) (Credentials, error) {
	h := r.Header.Get("Authorization")
	scheme, rest, _ := strings.Cut(h, " ")
	var c Credentials
	switch {
	case h == "":
		return c, ErrNoCredentials
	case strings.EqualFold(scheme, "Bearer"):
		c.Token = strings.TrimSpace(rest)
	case strings.EqualFold(scheme, "Basic"):
		var ok bool
		c.User, c.Token, ok = r.BasicAuth()
		if !ok {
			return c, errors.New("malformed Basic credentials")
		}
	default:
		return c, errors.New("unsupported Authorization scheme; use Bearer, or Basic with the token as password")
	}
	if c.Token == "" {
		return c, ErrNoCredentials
	}
	return c, nil
}

// SplitAddr splits a remote address into host and port.
func SplitAddr(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Status is the HTTP status for an Authenticate error: 503 while an IdP
// is unreachable, 403 for a valid token that policy refuses, else 401.
func Status(err error) int {
	switch {
	case token.IsTemporary(err):
		return http.StatusServiceUnavailable
	case Reason(err) == ReasonDenied || Reason(err) == ReasonUserMismatch:
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// Challenge is the WWW-Authenticate value for an Authenticate error.
func Challenge(err error) string {
	if errors.Is(err, ErrNoCredentials) {
		return `Bearer realm="clickgate"`
	}
	return fmt.Sprintf(`Bearer realm="clickgate", error="invalid_token", error_description=%q`, HeaderSafe(err.Error()))
}

// HeaderSafe keeps a message fit for a quoted-string header parameter.
func HeaderSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' || r == '"' || r == '\\' {
			return '\''
		}
		return r
	}, s)
}
