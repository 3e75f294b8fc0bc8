package devidp

import (
	"crypto/subtle"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/clickgate/clickgate/internal/config"
)

// user is one person of dev_idp.users.
type user struct {
	username      string
	secret        secret
	email         string
	emailVerified bool
	name          string
	groups        []string
}

// claims are what tokens, userinfo and introspection say about the user.
func (u *user) claims() map[string]any {
	c := map[string]any{
		"preferred_username": u.username,
		"groups":             append([]string{}, u.groups...),
	}
	if u.name != "" {
		c["name"] = u.name
	}
	if u.email != "" {
		c["email"] = u.email
		c["email_verified"] = u.emailVerified
	}
	return c
}

// secret is a password or client secret, in plain text or bcrypt.
type secret struct {
	plain string
	hash  []byte
}

func newSecret(s string) secret {
	if config.IsBcryptHash(s) {
		return secret{hash: []byte(s)}
	}
	return secret{plain: s}
}

func (s secret) matches(given string) bool {
	if s.hash != nil {
		return bcrypt.CompareHashAndPassword(s.hash, []byte(given)) == nil
	}
	if s.plain == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(s.plain), []byte(given)) == 1
}

// directory finds users by user name or email, case-insensitively.
type directory struct {
	byName map[string]*user
	byKey  map[string]*user // lower-cased user name and email
	// dummy is compared against when the user is unknown or has a plain
	// password, so that every answer costs the same time; its cost is that
	// of the configured hashes.
	dummy []byte
}

func newDirectory(cfg []config.DevUser) *directory {
	d := &directory{byName: map[string]*user{}, byKey: map[string]*user{}}
	cost := bcrypt.MinCost
	for _, cu := range cfg {
		u := &user{
			username:      cu.Username,
			secret:        newSecret(cu.Password),
			email:         cu.Email,
			emailVerified: cu.EmailVerified == nil || *cu.EmailVerified,
			name:          cu.Name,
			groups:        cu.Groups,
		}
		if u.secret.hash != nil {
			if c, err := bcrypt.Cost(u.secret.hash); err == nil && c > cost && c <= 14 {
				cost = c
			}
		}
		d.byName[u.username] = u
		d.byKey[strings.ToLower(u.username)] = u
		if u.email != "" {
			d.byKey[strings.ToLower(u.email)] = u
		}
	}
	d.dummy, _ = bcrypt.GenerateFromPassword([]byte("clickgate dev idp: no such user"), cost)
	return d
}

// user returns the user whose subject is sub.
func (d *directory) user(sub string) *user { return d.byName[sub] }

// authenticate checks a sign-in; the answer never says which of user name
// or password was wrong, and takes as long either way.
func (d *directory) authenticate(login, password string) (*user, bool) {
	u := d.byKey[strings.ToLower(strings.TrimSpace(login))]
	if u == nil {
		_ = bcrypt.CompareHashAndPassword(d.dummy, []byte(password))
		return nil, false
	}
	if u.secret.hash == nil {
		// A plain password compares in no time; spend what bcrypt
		// would, so the time does not tell plain from unknown.
		_ = bcrypt.CompareHashAndPassword(d.dummy, []byte(password))
	}
	if !u.secret.matches(password) {
		return nil, false
	}
	return u, true
}

// Failed sign-ins are limited per (login, client address) and per client
// address, over a sliding minute.
const (
	failureWindow   = time.Minute
	maxUserFailures = 5
	maxAddrFailures = 20
)

// limiter counts failed sign-ins.
type limiter struct {
	now func() time.Time

	mu        sync.Mutex
	failures  map[string][]time.Time
	lastSweep time.Time
}

func newLimiter(now func() time.Time) *limiter {
	return &limiter{now: now, failures: map[string][]time.Time{}}
}

func userKey(login, addr string) string {
	return "u\x00" + strings.ToLower(strings.TrimSpace(login)) + "\x00" + addr
}

func addrKey(addr string) string { return "a\x00" + addr }

// recent drops failures older than the window and returns those left.
func (l *limiter) recent(key string, now time.Time) []time.Time {
	ts := l.failures[key]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= failureWindow {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(l.failures, key)
		return nil
	}
	l.failures[key] = ts
	return ts
}

// blocked reports whether another attempt may be made now, and if not,
// when it may.
func (l *limiter) blocked(login, addr string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range []struct {
		key string
		max int
	}{{userKey(login, addr), maxUserFailures}, {addrKey(addr), maxAddrFailures}} {
		if ts := l.recent(k.key, now); len(ts) >= k.max {
			return true, failureWindow - now.Sub(ts[len(ts)-k.max])
		}
	}
	return false, 0
}

func (l *limiter) fail(login, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range []string{userKey(login, addr), addrKey(addr)} {
		l.failures[k] = append(l.recent(k, now), now)
	}
	if now.Sub(l.lastSweep) > failureWindow {
		l.lastSweep = now
		for k := range l.failures {
			l.recent(k, now)
		}
	}
}

// succeed forgets the failures of login from addr.
func (l *limiter) succeed(login, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, userKey(login, addr))
}
