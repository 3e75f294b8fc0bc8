package token

import (
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/config"
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

// constructors registers processor types: adding a provider is one file
// and one line here.
var constructors = map[string]func(name string, cfg *config.TokenProcessor, opt Options) (Processor, error){
	config.TypeJWT:    newJWTProcessor,
	config.TypeOIDC:   newOIDCProcessor,
	config.TypeOpaque: newOpaqueProcessor,
	config.TypeGitHub: newGitHubProcessor,
	config.TypeGoogle: newGoogleProcessor,
}

// New builds the processor described by cfg.
func New(name string, cfg *config.TokenProcessor, opt Options) (Processor, error) {
	opt = opt.withDefaults()
	newProcessor, ok := constructors[cfg.Type]
	if !ok {
		return nil, fmt.Errorf("token_processors.%s.type: %q is not a processor type", name, cfg.Type)
	}
	return newProcessor(name, cfg, opt)
}

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

func newOpaqueProcessor(name string, cfg *config.TokenProcessor, opt Options) (Processor, error) {
	return &opaqueProcessor{name: name, checker: opaqueCheckerFor(opt.idp(name), cfg, opt), policy: policyFor(name, cfg)}, nil
}
