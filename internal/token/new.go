package token

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Options carries what every processor shares.
type Options struct {
	// HTTPClient calls IdPs; nil means a client with IdPFetchTimeout.
	// Each call gets IdPFetchTimeout whatever the client's timeout.
	HTTPClient *http.Client
	Metrics    *Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// withDefaults fills in the zero values.
func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: IdPFetchTimeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Extra is a processor that is not in token_processors, which its owner
// builds and hands to NewVerifierFromConfig (the OAuth broker's, for the
// access tokens it issues), with how long its identities may be cached.
type Extra struct {
	Processor Processor
	CacheTTL  time.Duration
}

// New builds the processor described by cfg.
func New(name string, cfg *Config, opt Options) (Processor, error) {
	opt = opt.withDefaults()
	t, ok := types[cfg.Type]
	if !ok {
		return nil, fmt.Errorf("token_processors.%s.type: %q is not a processor type", name, cfg.Type)
	}
	return t.New(name, cfg, opt)
}

// Describe says how cfg's kind checks tokens; nothing for an unknown kind.
func Describe(cfg *Config) []string {
	if t, ok := types[cfg.Type]; ok {
		return t.Describe(cfg)
	}
	return nil
}

// ChecksAudience reports whether cfg's tokens carry an aud that the
// processor compares with its audiences.
func ChecksAudience(cfg *Config) bool {
	t, ok := types[cfg.Type]
	return ok && t.ChecksAudience(cfg)
}

// hasAudiences is ChecksAudience for the kinds whose tokens carry an aud.
func hasAudiences(cfg *Config) bool { return len(cfg.Audiences) > 0 }

// NewVerifierFromConfig builds the processors of cfgs named in order (the
// configuration's directory.processors), in that order, and a Verifier
// over them and then the extra ones.
func NewVerifierFromConfig(order []string, cfgs map[string]*Config, opt Options, extra ...Extra) (*Verifier, error) {
	var ps []Processor
	ttl := map[string]time.Duration{}
	for _, name := range order {
		pc := cfgs[name]
		p, err := New(name, pc, opt)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
		ttl[name] = pc.CacheTTL
	}
	for _, e := range extra {
		ps = append(ps, e.Processor)
		ttl[e.Processor.Name()] = e.CacheTTL
	}
	return NewVerifier(ps, ttl, opt.Metrics, opt.Now), nil
}

// idp is processor name's client of its IdP, with its own circuit breaker.
func (o Options) idp(name string) *idpClient {
	return &idpClient{processor: name, http: o.HTTPClient, metrics: o.Metrics, breaker: newBreaker(o.Now)}
}

func policyFor(name string, cfg *Config) *claimPolicy {
	return &claimPolicy{processor: name, required: cfg.RequiredClaims, usernameClaim: cfg.UsernameClaim, groupsClaim: cfg.GroupsClaim}
}

func jwtVerifierFor(name string, cfg *Config, opt Options) *jwtVerifier {
	algs := make([]jose.SignatureAlgorithm, len(cfg.Algorithms))
	for i, a := range cfg.Algorithms {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	return &jwtVerifier{
		processor: name, issuer: cfg.Issuer, audiences: cfg.Audiences,
		algorithms: algs, leeway: cfg.Leeway, now: opt.Now,
	}
}

func algorithmsLine(tp *Config) string {
	return fmt.Sprintf("algorithms: %s (never none)", strings.Join(tp.Algorithms, ", "))
}

func exchangeEndpoint(cfg *Config) Endpoint {
	return Endpoint{URL: cfg.TokenURL, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret}
}

func opaqueCheckerFor(idp *idpClient, cfg *Config, opt Options) *opaqueChecker {
	return &opaqueChecker{
		idp: idp, introspectionURL: cfg.IntrospectionURL, userinfoURL: cfg.UserinfoURL,
		clientID: cfg.ClientID, clientSecret: cfg.ClientSecret,
		issuer: cfg.Issuer, audiences: cfg.Audiences, leeway: cfg.Leeway, now: opt.Now,
	}
}
