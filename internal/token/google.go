package token

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/problems"
)

// googleTokenPrefix starts every Google OAuth access token.
const googleTokenPrefix = "ya29."

// googleProcessor checks Google OAuth access tokens, which are opaque:
// tokeninfo says which client the token was issued to and until when, and
// userinfo says who the person is and in which Workspace domain (hd).
//
// Google access tokens carry no groups: Google Groups and Cloud Identity
// groups can only be read with the Admin SDK (Directory API) under
// domain-wide delegation, which clickgate does not do. Identities from
// this processor therefore have no groups; give roles with
// directory.roles.common, or use an IdP that federates Google and issues
// groups.
type googleProcessor struct {
	name          string
	tokeninfo     *url.URL
	userinfoURL   string
	audiences     []string
	hostedDomain  string
	usernameClaim string
	leeway        time.Duration
	now           func() time.Time
	idp           *idpClient
	policy        *claimPolicy
}

var googleType = Type{New: newGoogleProcessor, Defaults: googleDefaults, Validate: validateGoogle, ChecksAudience: hasAudiences, Describe: func(tp *Config) []string {
	out := []string{fmt.Sprintf("Google access tokens checked at %s (audience, expiry) and %s (the person)", tp.TokeninfoURL, tp.UserinfoURL)}
	if tp.HostedDomain != "" {
		out = append(out, "only Workspace domain (hd) "+tp.HostedDomain)
	}
	return out
}}

// Google's endpoints, the defaults of userinfo_url and tokeninfo_url.
const (
	DefaultGoogleUserinfo  = "https://openidconnect.googleapis.com/v1/userinfo"
	DefaultGoogleTokeninfo = "https://oauth2.googleapis.com/tokeninfo"
)

func googleDefaults(c *Config) {
	if c.UsernameClaim == "" {
		c.UsernameClaim = "email"
	}
	if c.UserinfoURL == "" {
		c.UserinfoURL = DefaultGoogleUserinfo
	}
	if c.TokeninfoURL == "" {
		c.TokeninfoURL = DefaultGoogleTokeninfo
	}
	defaultAudienceIsClientID(c)
}

func validateGoogle(c *Config, path string, p *problems.List) {
	p.Required(path+".client_id", c.ClientID, "your OAuth client id; Google tokens issued to other clients are refused")
	p.URL(path+".userinfo_url", c.UserinfoURL)
	p.URL(path+".tokeninfo_url", c.TokeninfoURL)
}

func newGoogleProcessor(name string, cfg *Config, opt Options) (Processor, error) {
	ti, err := url.Parse(cfg.TokeninfoURL) // an http(s) URL: validateGoogle checked it
	if err != nil {
		return nil, err
	}
	return &googleProcessor{
		name: name, tokeninfo: ti, userinfoURL: cfg.UserinfoURL,
		audiences: cfg.Audiences, hostedDomain: cfg.HostedDomain,
		usernameClaim: cfg.UsernameClaim,
		leeway:        cfg.Leeway, now: opt.Now,
		idp: opt.idp(name), policy: policyFor(name, cfg),
	}, nil
}

func (p *googleProcessor) Name() string { return p.name }

// Accepts only tokens that start with "ya29.", Google's access token
// prefix, so that no other provider's token is sent to Google. Some Google
// tokens (service accounts: "ya29.c.…") have two dots and so a JWT's
// shape, but they never parse as one.
func (p *googleProcessor) Accepts(t *Token) bool {
	return t.JWT == nil && strings.HasPrefix(t.Raw, googleTokenPrefix) && len(t.Raw) > len(googleTokenPrefix)
}

// Recognizes reports that t is Google's by its prefix, so that the
// Verifier sends it to this processor only, never to a generic opaque
// processor that comes first.
func (p *googleProcessor) Recognizes(t *Token) bool { return p.Accepts(t) }

// Verify asks tokeninfo first (audience and expiry decide most refusals),
// then userinfo (the person and their Workspace domain).
func (p *googleProcessor) Verify(ctx context.Context, t *Token) (*identity.Identity, error) {
	ti, err := p.tokenInfo(ctx, t.Raw)
	if err != nil {
		return nil, err
	}
	aud, _ := ti["aud"].(string)
	azp, _ := ti["azp"].(string)
	var auds jwt.Audience
	for _, a := range []string{aud, azp} {
		if a != "" {
			auds = append(auds, a)
		}
	}
	if err := checkAudience(auds, p.audiences); err != nil {
		return nil, errorf(ReasonAudience, p.name, "%v", err)
	}
	exp, ok := googleInt(ti["exp"])
	if !ok {
		in, ok := googleInt(ti["expires_in"])
		if !ok {
			return nil, errorf(ReasonExpired, p.name, "tokeninfo gives no expiry for the token")
		}
		exp = p.now().Unix() + in
	}
	if err := checkTimes(p.name, jwt.NewNumericDate(time.Unix(exp, 0)), nil, nil, p.now(), p.leeway); err != nil {
		return nil, err
	}
	sub, _ := ti["sub"].(string)
	if sub == "" {
		return nil, errorf(ReasonClaims, p.name, "tokeninfo names no user (sub); the token needs the openid or email scope")
	}

	ui, err := p.userInfo(ctx, t.Raw)
	if err != nil {
		return nil, err
	}
	if us, _ := ui["sub"].(string); us != sub {
		return nil, errorf(ReasonClaims, p.name, "userinfo sub does not match tokeninfo sub")
	}
	if p.hostedDomain != "" {
		hd, _ := ui["hd"].(string)
		if !strings.EqualFold(hd, p.hostedDomain) {
			if hd == "" {
				return nil, errorf(ReasonClaims, p.name, "the Google account is not in Workspace domain %s (it has no hosted domain)", quote(p.hostedDomain))
			}
			return nil, errorf(ReasonClaims, p.name, "the Google account is in Workspace domain %s, not the expected %s", quote(hd), quote(p.hostedDomain))
		}
	}

	// userinfo gives the profile; tokeninfo is authoritative for what
	// concerns the token itself.
	claims := make(map[string]any, len(ui)+6)
	for k, v := range ui {
		claims[k] = v
	}
	claims["sub"] = sub
	if aud != "" {
		claims["aud"] = aud
	}
	if azp != "" {
		claims["azp"] = azp
	}
	if scope, ok := ti["scope"].(string); ok {
		claims["scope"] = scope
	}
	claims["exp"] = float64(exp)
	if _, ok := claims["email"].(string); !ok {
		if email, ok := ti["email"].(string); ok {
			claims["email"] = email
			claims["email_verified"] = ti["email_verified"]
		}
	}
	// An address Google has not verified is no proof of anything: it is
	// dropped, so that neither the user name nor an e-mail domain policy
	// can rest on it.
	verified := googleBool(claims["email_verified"])
	claims["email_verified"] = verified
	if !verified {
		delete(claims, "email")
		if p.usernameClaim == "email" {
			return nil, errorf(ReasonClaims, p.name, "username_claim is email, but Google has not verified the account's e-mail address")
		}
	}
	return p.policy.identity(claims)
}

// tokenInfo asks Google's tokeninfo endpoint about raw. The token goes in
// the URL, as the endpoint expects, so the URL never appears in errors.
func (p *googleProcessor) tokenInfo(ctx context.Context, raw string) (map[string]any, error) {
	u := *p.tokeninfo
	q := u.Query()
	q.Set("access_token", raw)
	u.RawQuery = q.Encode()
	var ti map[string]any
	if err := p.idp.getJSON(ctx, "tokeninfo", u.String(), &ti); err != nil {
		var se *statusError
		if !errors.As(err, &se) {
			return nil, err
		}
		switch se.status {
		case http.StatusBadRequest, http.StatusUnauthorized:
			return nil, errorf(ReasonInactive, p.name, "Google says the token is not valid (expired, revoked or unknown)")
		default:
			return nil, errorf(ReasonUnavailable, p.name, "Google's tokeninfo endpoint answered HTTP %d; check tokeninfo_url", se.status)
		}
	}
	return ti, nil
}

// userInfo reads the OpenID userinfo endpoint with the token.
func (p *googleProcessor) userInfo(ctx context.Context, raw string) (map[string]any, error) {
	var ui map[string]any
	if _, err := p.idp.getBearer(ctx, "userinfo", p.userinfoURL, raw, &ui, nil); err != nil {
		var se *statusError
		if !errors.As(err, &se) {
			return nil, err
		}
		switch se.status {
		case http.StatusUnauthorized, http.StatusForbidden:
			return nil, errorf(ReasonInactive, p.name, "Google's userinfo endpoint refused the token (HTTP %d); it needs the openid, email or profile scope", se.status)
		default:
			return nil, errorf(ReasonUnavailable, p.name, "Google's userinfo endpoint answered HTTP %d; check userinfo_url", se.status)
		}
	}
	return ui, nil
}

// googleInt reads tokeninfo's numbers, which Google sends as strings.
func googleInt(v any) (int64, bool) {
	switch n := v.(type) {
	case string:
		i, err := strconv.ParseInt(n, 10, 64)
		return i, err == nil
	case float64:
		return int64(n), true
	}
	return 0, false
}

// googleBool reads email_verified: a boolean from userinfo, the string
// "true" or "false" from tokeninfo.
func googleBool(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return b == "true"
	}
	return false
}
