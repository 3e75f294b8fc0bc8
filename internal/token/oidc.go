package token

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/oidcdiscovery"
	"github.com/clickgate/clickgate/internal/problems"
)

// oidcProcessor discovers an OpenID provider's endpoints, verifies JWTs
// locally against its JWKS, and checks opaque access tokens at its
// userinfo endpoint (and introspection, when client credentials are set).
type oidcProcessor struct {
	name   string
	issuer string
	idp    *idpClient
	policy *claimPolicy
	// template holds the settings; endpoints are filled in by discovery.
	jwtTemplate    jwtVerifier
	opaqueTemplate opaqueChecker
	maxStale       time.Duration
	exchange       Endpoint

	mu          sync.Mutex
	discovered  *oidcEndpoints
	lastAttempt time.Time
	lastErr     error
}

type oidcEndpoints struct {
	jwt      *jwtVerifier
	opaque   *opaqueChecker
	keys     *remoteKeys
	tokenURL string
}

func (p *oidcProcessor) Name() string { return p.name }

func (p *oidcProcessor) Accepts(t *Token) bool {
	return !t.LooksLikeJWT() || t.JWT == nil || t.Issuer == p.issuer
}

func (p *oidcProcessor) Verify(ctx context.Context, t *Token) (*identity.Identity, error) {
	ep, err := p.endpoints(ctx)
	if err != nil {
		return nil, err
	}
	var claims map[string]any
	if t.LooksLikeJWT() {
		claims, err = ep.jwt.verify(ctx, t)
	} else {
		claims, err = ep.opaque.claims(ctx, t.Raw)
	}
	if err != nil {
		return nil, err
	}
	return p.policy.identity(claims)
}

// endpoints runs discovery once; a failure is retried at most every
// JWKSMinRefresh so that an IdP outage is not multiplied by traffic.
func (p *oidcProcessor) endpoints(ctx context.Context) (*oidcEndpoints, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.discovered != nil {
		return p.discovered, nil
	}
	now := p.jwtTemplate.now()
	if !p.lastAttempt.IsZero() && now.Sub(p.lastAttempt) < JWKSMinRefresh {
		return nil, p.lastErr
	}
	p.lastAttempt = now
	// Discovery is everyone's, like the JWKS fetch: a caller that gives up
	// must not leave its cancellation as the error for JWKSMinRefresh.
	ep, err := p.discover(context.WithoutCancel(ctx))
	if err != nil {
		p.lastErr = err
		return nil, err
	}
	p.discovered = ep
	return ep, nil
}

func (p *oidcProcessor) discover(ctx context.Context) (*oidcEndpoints, error) {
	get := func(ctx context.Context, u string, d *oidcdiscovery.Document) error {
		return p.idp.getJSON(ctx, "discovery", u, d)
	}
	d, err := oidcdiscovery.Fetch(ctx, get, p.issuer)
	if err != nil {
		var te *Error
		var ie *oidcdiscovery.IssuerError
		switch {
		case errors.As(err, &te):
			return nil, err
		case errors.As(err, &ie):
			return nil, errorf(ReasonUnavailable, p.name, "%v", err)
		}
		return nil, errorf(ReasonUnavailable, p.name, "discovery at %s: %v", oidcdiscovery.URL(p.issuer), err)
	}
	if d.JWKSURI == "" {
		return nil, errorf(ReasonUnavailable, p.name, "discovery document has no jwks_uri")
	}
	keys := newRemoteKeys(d.JWKSURI, p.idp, p.maxStale, p.jwtTemplate.now)
	jv := p.jwtTemplate
	jv.keys = keys
	oc := p.opaqueTemplate
	if oc.userinfoURL == "" {
		oc.userinfoURL = d.UserinfoEndpoint
	}
	if oc.introspectionURL == "" && oc.clientID != "" && oc.clientSecret != "" {
		oc.introspectionURL = d.IntrospectionEndpoint
	}
	if oc.userinfoURL == "" && oc.introspectionURL == "" {
		return nil, errorf(ReasonUnavailable, p.name, "discovery document has neither userinfo_endpoint nor introspection_endpoint")
	}
	return &oidcEndpoints{jwt: &jv, opaque: &oc, keys: keys, tokenURL: d.TokenEndpoint}, nil
}

// Ready reports whether discovery succeeded and signing keys are at hand.
func (p *oidcProcessor) Ready(ctx context.Context) error {
	ep, err := p.endpoints(ctx)
	if err != nil {
		return err
	}
	if err := ep.keys.ready(ctx); err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	return nil
}

var oidcType = Type{New: newOIDCProcessor, Defaults: defaultAudienceIsClientID, Validate: validateOIDC, ChecksAudience: hasAudiences, Describe: func(tp *Config) []string {
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

func newOIDCProcessor(name string, cfg *Config, opt Options) (Processor, error) {
	idp := opt.idp(name)
	return &oidcProcessor{
		name: name, issuer: cfg.Issuer, idp: idp, policy: policyFor(name, cfg),
		jwtTemplate:    *jwtVerifierFor(name, cfg, opt),
		opaqueTemplate: *opaqueCheckerFor(idp, cfg, opt),
		maxStale:       cfg.MaxKeyStaleness,
		exchange:       exchangeEndpoint(cfg),
	}, nil
}

// defaultAudienceIsClientID: tokens issued to clickgate's own client name
// it in aud (oidc, google).
func defaultAudienceIsClientID(c *Config) {
	if len(c.Audiences) == 0 && c.ClientID != "" {
		c.Audiences = []string{c.ClientID}
	}
}

func validateOIDC(c *Config, path string, p *problems.List) {
	p.Required(path+".issuer", c.Issuer, "the IdP's issuer URL; discovery reads <issuer>/.well-known/openid-configuration")
	if c.Issuer != "" {
		p.URL(path+".issuer", c.Issuer)
	}
	validateAudiences(path, c.Audiences, p)
	validateIntrospection(c, path, p)
}
