package token

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/oidcdiscovery"
)

// Options carries what every processor shares.
type Options struct {
	// HTTPClient calls IdPs; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	Metrics    *Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// withDefaults fills in the zero values.
func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
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

// A Type is one kind of token processor: how to build it, and what it
// tells operators and the rest of clickgate about itself. Adding a kind is
// a file with its Type and one line in types.
type Type struct {
	New func(name string, cfg *config.TokenProcessor, opt Options) (Processor, error)
	// Describe says how the kind checks tokens, for check-config: the
	// lines that differ by kind (the common ones are check-config's).
	Describe func(cfg *config.TokenProcessor) []string
	// ChecksAudience reports whether tokens carry an aud that the
	// processor compares with cfg.Audiences (GitHub's carry none).
	ChecksAudience func(cfg *config.TokenProcessor) bool
}

// types are the processor kinds, by token_processors.*.type.
var types = map[string]Type{
	config.TypeJWT:    jwtType,
	config.TypeOIDC:   oidcType,
	config.TypeOpaque: opaqueType,
	config.TypeGitHub: githubType,
	config.TypeGoogle: googleType,
}

// New builds the processor described by cfg.
func New(name string, cfg *config.TokenProcessor, opt Options) (Processor, error) {
	opt = opt.withDefaults()
	t, ok := types[cfg.Type]
	if !ok {
		return nil, fmt.Errorf("token_processors.%s.type: %q is not a processor type", name, cfg.Type)
	}
	return t.New(name, cfg, opt)
}

// Describe says how cfg's kind checks tokens; nothing for an unknown kind.
func Describe(cfg *config.TokenProcessor) []string {
	if t, ok := types[cfg.Type]; ok {
		return t.Describe(cfg)
	}
	return nil
}

// ChecksAudience reports whether cfg's tokens carry an aud that the
// processor compares with its audiences.
func ChecksAudience(cfg *config.TokenProcessor) bool {
	t, ok := types[cfg.Type]
	return ok && t.ChecksAudience(cfg)
}

// hasAudiences is ChecksAudience for the kinds whose tokens carry an aud.
func hasAudiences(cfg *config.TokenProcessor) bool { return len(cfg.Audiences) > 0 }

// NewVerifierFromConfig builds every processor named in directory.processors,
// in that order, and a Verifier over them and then the extra ones.
func NewVerifierFromConfig(cfg *config.Config, opt Options, extra ...Extra) (*Verifier, error) {
	var ps []Processor
	ttl := map[string]time.Duration{}
	for _, name := range cfg.Directory.Processors {
		pc := cfg.TokenProcessors[name]
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

func (o Options) idp(name string) *idpClient {
	return &idpClient{processor: name, http: o.HTTPClient, metrics: o.Metrics}
}

func policyFor(name string, cfg *config.TokenProcessor) *claimPolicy {
	return &claimPolicy{processor: name, required: cfg.RequiredClaims, usernameClaim: cfg.UsernameClaim, groupsClaim: cfg.GroupsClaim}
}

func jwtVerifierFor(name string, cfg *config.TokenProcessor, opt Options) *jwtVerifier {
	algs := make([]jose.SignatureAlgorithm, len(cfg.Algorithms))
	for i, a := range cfg.Algorithms {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	return &jwtVerifier{
		processor: name, issuer: cfg.Issuer, audiences: cfg.Audiences,
		algorithms: algs, leeway: cfg.Leeway, now: opt.Now,
	}
}

var jwtType = Type{New: newJWTProcessor, ChecksAudience: hasAudiences, Describe: func(tp *config.TokenProcessor) []string {
	var out []string
	switch {
	case tp.JWKSURI != "":
		out = append(out, fmt.Sprintf("JWTs verified locally with keys from %s (refreshed at most every %s for an unknown kid; kept for %s if it goes down)", tp.JWKSURI, JWKSMinRefresh, tp.MaxKeyStaleness))
	case tp.JWKSFile != "":
		out = append(out, "JWTs verified locally with keys from the file "+tp.JWKSFile)
	case tp.Keys != "":
		out = append(out, "JWTs verified locally with the inline keys")
	}
	return append(out, fmt.Sprintf("iss must be %q", tp.Issuer), algorithmsLine(tp))
}}

func algorithmsLine(tp *config.TokenProcessor) string {
	return fmt.Sprintf("algorithms: %s (never none)", strings.Join(tp.Algorithms, ", "))
}

func newJWTProcessor(name string, cfg *config.TokenProcessor, opt Options) (Processor, error) {
	keys, err := keySourceFor(name, cfg, opt)
	if err != nil {
		return nil, err
	}
	return NewJWTProcessor(name, cfg, keys, opt), nil
}

// NewJWTProcessor returns a jwt processor for cfg that verifies with keys
// rather than cfg's jwks_uri, jwks_file or keys: for an issuer that holds
// its keys in this process.
func NewJWTProcessor(name string, cfg *config.TokenProcessor, keys KeySource, opt Options) Processor {
	v := jwtVerifierFor(name, cfg, opt.withDefaults())
	v.keys = keys
	return &jwtProcessor{verifier: v, policy: policyFor(name, cfg), exchange: exchangeEndpoint(cfg)}
}

// keySourceFor returns the jwt processor's keys: a JWKS URL, a file or
// inline keys, plus the shared secret when HMAC is configured.
func keySourceFor(name string, cfg *config.TokenProcessor, opt Options) (KeySource, error) {
	if cfg.JWKSURI != "" {
		return newRemoteKeys(cfg.JWKSURI, opt.idp(name), cfg.MaxKeyStaleness, opt.Now), nil
	}
	var keys []jose.JSONWebKey
	var err error
	switch {
	case cfg.JWKSFile != "":
		var data []byte
		data, err = os.ReadFile(cfg.JWKSFile)
		if err == nil {
			keys, err = ParseKeys(data)
		}
		if err != nil {
			return nil, fmt.Errorf("token_processors.%s.jwks_file: %v", name, err)
		}
	case cfg.Keys != "":
		keys, err = ParseKeys([]byte(cfg.Keys))
		if err != nil {
			return nil, fmt.Errorf("token_processors.%s.keys: %v", name, err)
		}
	}
	if cfg.SharedSecret != "" {
		keys = append(keys, jose.JSONWebKey{Key: []byte(cfg.SharedSecret)})
	}
	return staticKeys(keys), nil
}

var oidcType = Type{New: newOIDCProcessor, ChecksAudience: hasAudiences, Describe: func(tp *config.TokenProcessor) []string {
	out := []string{
		fmt.Sprintf("discovery at %s gives the JWKS, userinfo and introspection endpoints", oidcdiscovery.URL(tp.Issuer)),
		fmt.Sprintf("JWTs verified locally against the discovered JWKS; iss must be %q", tp.Issuer),
	}
	switch {
	case tp.ClientSecret != "":
		out = append(out, fmt.Sprintf("opaque access tokens introspected (client %s) and read at the userinfo endpoint", tp.ClientID))
	case len(tp.Audiences) > 0:
		out = append(out, "opaque access tokens are refused: only introspection can check their audience (set client_id and client_secret)")
	default:
		out = append(out, "opaque access tokens checked at the userinfo endpoint")
	}
	return append(out, algorithmsLine(tp))
}}

func newOIDCProcessor(name string, cfg *config.TokenProcessor, opt Options) (Processor, error) {
	idp := opt.idp(name)
	return &oidcProcessor{
		name: name, issuer: cfg.Issuer, idp: idp, policy: policyFor(name, cfg),
		jwtTemplate:    *jwtVerifierFor(name, cfg, opt),
		opaqueTemplate: *opaqueCheckerFor(idp, cfg, opt),
		maxStale:       cfg.MaxKeyStaleness,
		exchange:       exchangeEndpoint(cfg),
	}, nil
}

func exchangeEndpoint(cfg *config.TokenProcessor) Endpoint {
	return Endpoint{URL: cfg.TokenURL, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret}
}

func opaqueCheckerFor(idp *idpClient, cfg *config.TokenProcessor, opt Options) *opaqueChecker {
	return &opaqueChecker{
		idp: idp, introspectionURL: cfg.IntrospectionURL, userinfoURL: cfg.UserinfoURL,
		clientID: cfg.ClientID, clientSecret: cfg.ClientSecret,
		issuer: cfg.Issuer, audiences: cfg.Audiences, leeway: cfg.Leeway, now: opt.Now,
	}
}

var opaqueType = Type{New: newOpaqueProcessor, ChecksAudience: hasAudiences, Describe: func(tp *config.TokenProcessor) []string {
	var out []string
	if tp.IntrospectionURL != "" {
		out = append(out, fmt.Sprintf("tokens introspected (RFC 7662) at %s as client %s", tp.IntrospectionURL, tp.ClientID))
	}
	if tp.UserinfoURL != "" {
		out = append(out, "tokens checked at the userinfo endpoint "+tp.UserinfoURL)
	}
	if tp.IntrospectionURL == "" && len(tp.Audiences) > 0 {
		out = append(out, "warning: every token is refused: audiences is set, and userinfo alone cannot tell a token's audience (add introspection_url)")
	}
	return out
}}

func newOpaqueProcessor(name string, cfg *config.TokenProcessor, opt Options) (Processor, error) {
	return &opaqueProcessor{name: name, checker: opaqueCheckerFor(opt.idp(name), cfg, opt), policy: policyFor(name, cfg)}, nil
}
