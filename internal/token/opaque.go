package token

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/problems"
)

// opaqueChecker asks the IdP about a token it cannot verify locally: RFC
// 7662 introspection and/or the OpenID userinfo endpoint.
type opaqueChecker struct {
	idp              *idpClient
	introspectionURL string
	userinfoURL      string
	clientID         string
	clientSecret     string
	issuer           string
	audiences        []string
	leeway           time.Duration
	now              func() time.Time
}

// claims returns what the IdP says about raw. Introspection is asked first
// (it knows expiry and audience), then userinfo (it knows the person).
func (o *opaqueChecker) claims(ctx context.Context, raw string) (map[string]any, error) {
	if o.introspectionURL == "" && len(o.audiences) > 0 {
		// Userinfo answers for any token the IdP issued, to any app; only
		// introspection tells the audience. Fail closed.
		return nil, errorf(ReasonAudience, o.idp.processor, "cannot check the audience of an opaque token without introspection; set client_id and client_secret (oidc) or introspection_url (opaque), or use JWT access tokens")
	}
	claims := map[string]any{}
	if o.introspectionURL != "" {
		ic, err := o.introspect(ctx, raw)
		if err != nil {
			return nil, err
		}
		claims = ic
	}
	if o.userinfoURL != "" {
		uc, err := o.userinfo(ctx, raw)
		if err != nil {
			return nil, err
		}
		if sub, ok := claims["sub"]; ok && uc["sub"] != sub {
			return nil, errorf(ReasonClaims, o.idp.processor, "userinfo sub does not match introspection sub")
		}
		for k, v := range uc {
			if _, ok := claims[k]; !ok {
				claims[k] = v
			}
		}
	}
	return claims, nil
}

func (o *opaqueChecker) introspect(ctx context.Context, raw string) (map[string]any, error) {
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	var resp map[string]any
	err := o.idp.postForm(ctx, "introspection", o.introspectionURL, form, &resp, func(r *http.Request) {
		// RFC 6749 §2.3.1: form-encode the credentials before Basic.
		r.SetBasicAuth(url.QueryEscape(o.clientID), url.QueryEscape(o.clientSecret))
	})
	if err != nil {
		var se *statusError
		if errors.As(err, &se) {
			return nil, errorf(ReasonUnavailable, o.idp.processor, "introspection refused clickgate's client credentials (%v); check client_id and client_secret", se)
		}
		return nil, err
	}
	if active, _ := resp["active"].(bool); !active {
		return nil, errorf(ReasonInactive, o.idp.processor, "the IdP says the token is not active (expired, revoked or unknown)")
	}
	if iss, ok := resp["iss"].(string); ok && o.issuer != "" && iss != o.issuer {
		return nil, errorf(ReasonIssuer, o.idp.processor, "issuer %s is not the expected %s", quote(iss), quote(o.issuer))
	}
	var aud jwt.Audience
	switch a := resp["aud"].(type) {
	case string:
		aud = jwt.Audience{a}
	case []any:
		for _, e := range a {
			if s, ok := e.(string); ok {
				aud = append(aud, s)
			}
		}
	}
	if err := checkAudience(aud, o.audiences); err != nil {
		return nil, errorf(ReasonAudience, o.idp.processor, "%v", err)
	}
	if err := checkTimes(o.idp.processor, optionalDate(resp["exp"]), optionalDate(resp["nbf"]), nil, o.now(), o.leeway); err != nil {
		return nil, err
	}
	return resp, nil
}

func (o *opaqueChecker) userinfo(ctx context.Context, raw string) (map[string]any, error) {
	var resp map[string]any
	if _, err := o.idp.getBearer(ctx, "userinfo", o.userinfoURL, raw, &resp, nil); err != nil {
		var se *statusError
		if errors.As(err, &se) {
			return nil, errorf(ReasonInactive, o.idp.processor, "the IdP's userinfo endpoint refused the token (HTTP %d)", se.status)
		}
		return nil, err
	}
	if sub, _ := resp["sub"].(string); sub == "" {
		return nil, errorf(ReasonClaims, o.idp.processor, "userinfo answer has no sub")
	}
	return resp, nil
}

func numericDate(f float64) *jwt.NumericDate {
	d := jwt.NumericDate(int64(f))
	return &d
}

// optionalDate reads an optional numeric date from an IdP's answer.
func optionalDate(v any) *jwt.NumericDate {
	f, ok := v.(float64)
	if !ok {
		return nil
	}
	return numericDate(f)
}

// opaqueProcessor verifies tokens that are not JWTs by asking the IdP.
type opaqueProcessor struct {
	name    string
	checker *opaqueChecker
	policy  *claimPolicy
}

func (p *opaqueProcessor) Name() string { return p.name }

// Accepts only tokens that are not JWTs: a JWT names its issuer and goes
// to the processor that trusts it.
func (p *opaqueProcessor) Accepts(t *Token) bool { return !t.LooksLikeJWT() }

func (p *opaqueProcessor) Verify(ctx context.Context, t *Token) (*identity.Identity, error) {
	claims, err := p.checker.claims(ctx, t.Raw)
	if err != nil {
		return nil, err
	}
	return p.policy.identity(claims)
}

var opaqueType = Type{New: newOpaqueProcessor, Validate: validateOpaque, ChecksAudience: hasAudiences, Describe: func(tp *Config) []string {
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

func newOpaqueProcessor(name string, cfg *Config, opt Options) (Processor, error) {
	return &opaqueProcessor{name: name, checker: opaqueCheckerFor(opt.idp(name), cfg, opt), policy: policyFor(name, cfg)}, nil
}

func validateOpaque(c *Config, path string, p *problems.List) {
	if c.IntrospectionURL == "" && c.UserinfoURL == "" {
		p.Add(path, "an opaque processor needs introspection_url and/or userinfo_url")
	}
	if c.IntrospectionURL != "" {
		p.URL(path+".introspection_url", c.IntrospectionURL)
	}
	validateIntrospection(c, path, p)
	if c.UserinfoURL != "" {
		p.URL(path+".userinfo_url", c.UserinfoURL)
	}
}
