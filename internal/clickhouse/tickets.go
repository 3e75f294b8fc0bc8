package clickhouse

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Tickets are short-lived passwords that clickgate signs for http_auth
// mode: ClickHouse receives Basic(user, ticket) and asks /clickhouse/auth,
// which verifies the ticket. The caller's own token never reaches
// ClickHouse. Replicas that share TicketSecret accept each other's tickets.
type Tickets struct {
	key    []byte
	signer jose.Signer
	ttl    time.Duration
	now    func() time.Time
	cache  *lru.Cache[string, issued]
	mu     sync.Mutex
}

type issued struct {
	raw     string
	expires time.Time
}

const (
	ticketIssuer   = "clickgate"
	ticketAudience = "clickgate-http-auth"
	// DefaultTicketTTL is how long a ticket is valid; it is reused until
	// a third of that is left.
	DefaultTicketTTL = 5 * time.Minute
)

// NewTickets uses secret (at least 32 bytes) or, if empty, a random key:
// fine for one process, but replicas need a shared secret.
func NewTickets(secret []byte, ttl time.Duration, now func() time.Time) (*Tickets, error) {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
	}
	if len(secret) < 32 {
		return nil, errors.New("clickhouse.ticket_secret: use at least 32 bytes")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	cache, _ := lru.New[string, issued](10000)
	return &Tickets{key: secret, signer: signer, ttl: ttl, now: now, cache: cache}, nil
}

// Issue returns a valid ticket for user, reusing one until near expiry.
func (t *Tickets) Issue(user string) (string, error) {
	now := t.now()
	if c, ok := t.cache.Get(user); ok && c.expires.Sub(now) > t.ttl/3 {
		return c.raw, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	exp := now.Add(t.ttl)
	raw, err := jwt.Signed(t.signer).Claims(jwt.Claims{
		Issuer: ticketIssuer, Audience: jwt.Audience{ticketAudience}, Subject: user,
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(exp),
	}).Serialize()
	if err != nil {
		return "", err
	}
	t.cache.Add(user, issued{raw: raw, expires: exp})
	return raw, nil
}

// ErrNotTicket means a password is not a clickgate ticket at all.
var ErrNotTicket = errors.New("not a clickgate ticket")

// Verify returns the user a ticket was issued for. It returns
// ErrNotTicket for anything that is not shaped like one, so callers can
// try the password as a token instead.
func (t *Tickets) Verify(raw string) (string, error) {
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.HS256})
	if err != nil {
		return "", ErrNotTicket
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil || unverified.Issuer != ticketIssuer || !unverified.Audience.Contains(ticketAudience) {
		return "", ErrNotTicket
	}
	var c jwt.Claims
	if err := tok.Claims(t.key, &c); err != nil {
		return "", fmt.Errorf("clickgate ticket: bad signature (issued by another clickgate without the same clickhouse.ticket_secret?)")
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: ticketIssuer, AnyAudience: jwt.Audience{ticketAudience}, Time: t.now()}, 5*time.Second); err != nil {
		return "", fmt.Errorf("clickgate ticket: %v", err)
	}
	if c.Expiry == nil || c.Subject == "" {
		return "", errors.New("clickgate ticket: no expiry or subject")
	}
	return c.Subject, nil
}
