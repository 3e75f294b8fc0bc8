package token

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/problems"
)

// GitHub REST API details clickgate relies on.
const (
	githubAPIVersion = "2022-11-28"
	githubMediaType  = "application/vnd.github+json"
	// githubExpiryHeader carries the expiry of expiring tokens, as
	// "2026-12-01 12:00:00 UTC" (or with a numeric offset).
	githubExpiryHeader = "GitHub-Authentication-Token-Expiration"
	// githubPerPage and githubMaxPages bound the org and team listings:
	// at most 1000 of each are read; a person in more is cut there.
	githubPerPage  = 100
	githubMaxPages = 10
)

// githubTokenPrefixes are the prefixes GitHub puts on its tokens: classic
// personal access tokens, OAuth app tokens, GitHub App user-to-server,
// server-to-server and refresh tokens, and fine-grained personal access
// tokens. See "Behind GitHub's new authentication token formats".
var githubTokenPrefixes = []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"}

// githubProcessor checks GitHub tokens, which are opaque, with the GitHub
// REST API (github.com or GitHub Enterprise Server): optionally that the
// token was issued to this OAuth app, then who the person is, their
// verified e-mail address when it is the user name, and their
// organisations and teams as groups ("org" and "org/team-slug").
type githubProcessor struct {
	name string
	// api is api_url without a trailing slash; apiURL is it parsed.
	api          string
	apiURL       *url.URL
	clientID     string
	clientSecret string
	emailMode    bool
	groupsClaim  string
	leeway       time.Duration
	now          func() time.Time
	idp          *idpClient
	policy       *claimPolicy
}

// githubType: GitHub tokens carry no aud; the OAuth app check (client_id)
// stands for it.
var githubType = Type{New: newGitHubProcessor, Defaults: githubDefaults, Validate: validateGitHub, ChecksAudience: func(*Config) bool { return false }, Describe: func(tp *Config) []string {
	out := []string{fmt.Sprintf("GitHub tokens checked with the REST API at %s; groups are org and org/team", tp.APIURL)}
	if tp.ClientID == "" {
		out = append(out, "warning: without client_id and client_secret any GitHub token of the person is accepted, whichever app it was issued to")
	}
	return out
}}

// DefaultGitHubAPI is api_url's default.
const DefaultGitHubAPI = "https://api.github.com"

func githubDefaults(c *Config) {
	if c.UsernameClaim == "" {
		c.UsernameClaim = "login"
	}
	if c.APIURL == "" {
		c.APIURL = DefaultGitHubAPI
	}
	c.APIURL = strings.TrimRight(c.APIURL, "/")
}

func validateGitHub(c *Config, path string, p *problems.List) {
	p.URL(path+".api_url", c.APIURL)
	if (c.ClientID == "") != (c.ClientSecret == "") {
		p.Add(path, "set both client_id and client_secret (to check that tokens were issued to your OAuth app), or neither")
	}
}

func newGitHubProcessor(name string, cfg *Config, opt Options) (Processor, error) {
	api := strings.TrimRight(cfg.APIURL, "/")
	apiURL, err := url.Parse(api) // an http(s) URL: validateGitHub checked it
	if err != nil {
		return nil, err
	}
	return &githubProcessor{
		name: name, api: api, apiURL: apiURL,
		clientID: cfg.ClientID, clientSecret: cfg.ClientSecret,
		emailMode:   cfg.UsernameClaim == "email",
		groupsClaim: cfg.GroupsClaim,
		leeway:      cfg.Leeway, now: opt.Now,
		idp: opt.idp(name), policy: policyFor(name, cfg),
	}, nil
}

func (p *githubProcessor) Name() string { return p.name }

// Accepts only tokens that carry one of GitHub's token prefixes, so that
// tokens of other providers (opaque or not) are never sent to GitHub.
// GitHub tokens are never JWTs, nor shaped like one.
func (p *githubProcessor) Accepts(t *Token) bool {
	if t.LooksLikeJWT() {
		return false
	}
	for _, prefix := range githubTokenPrefixes {
		if strings.HasPrefix(t.Raw, prefix) && len(t.Raw) > len(prefix) {
			return true
		}
	}
	return false
}

// Recognizes reports that t is GitHub's by its prefix, so that the
// Verifier sends it to this processor only, never to a generic opaque
// processor that comes first.
func (p *githubProcessor) Recognizes(t *Token) bool { return p.Accepts(t) }

// Verify asks GitHub, cheapest and most decisive first: the app check
// (refuses other apps' tokens before the token is used on the person's
// behalf), /user (validity, expiry), then /user/emails, orgs and teams.
func (p *githubProcessor) Verify(ctx context.Context, t *Token) (*identity.Identity, error) {
	var expiry time.Time
	var appUserID int64
	if p.clientID != "" {
		ct, err := p.checkToken(ctx, t.Raw)
		if err != nil {
			return nil, err
		}
		if ct.ExpiresAt != nil {
			expiry = *ct.ExpiresAt
		}
		if ct.User != nil {
			appUserID = ct.User.ID
		}
	}

	user, hdr, err := p.user(ctx, t.Raw)
	if err != nil {
		return nil, err
	}
	if appUserID != 0 && appUserID != user.ID {
		return nil, errorf(ReasonClaims, p.name, "the check-token API and /user name different users (%d and %d)", appUserID, user.ID)
	}
	if e, ok := parseGitHubExpiry(hdr.Get(githubExpiryHeader)); ok && (expiry.IsZero() || e.Before(expiry)) {
		expiry = e
	}
	claims := map[string]any{
		"iss":   p.api,
		"sub":   strconv.FormatInt(user.ID, 10),
		"login": user.Login,
	}
	if !expiry.IsZero() {
		if err := checkTimes(p.name, numericDate(float64(expiry.Unix())), nil, nil, p.now(), p.leeway); err != nil {
			return nil, err
		}
		claims["exp"] = float64(expiry.Unix())
	}
	if p.clientID != "" {
		claims["aud"] = p.clientID
	}
	if user.Name != "" {
		claims["name"] = user.Name
	}
	// /user's email is the public profile address; the answer says nothing
	// of whether it is verified, so it is left out. Only the primary
	// verified address from /user/emails becomes the email claim.
	if p.emailMode {
		email, err := p.primaryEmail(ctx, t.Raw)
		if err != nil {
			return nil, err
		}
		claims["email"] = email
		claims["email_verified"] = true
	}

	groups, err := p.groups(ctx, t.Raw)
	if err != nil {
		return nil, err
	}
	claims[p.groupsClaim] = groups
	return p.policy.identity(claims)
}

type githubUser struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
	Name  string `json:"name"`
}

type githubCheckToken struct {
	ExpiresAt *time.Time  `json:"expires_at"`
	User      *githubUser `json:"user"`
}

// checkToken asks GitHub's "Check a token" API whether raw was issued to
// this OAuth app. Without client_id the check is skipped and any GitHub
// token of the person is accepted, whichever app it was issued to.
func (p *githubProcessor) checkToken(ctx context.Context, raw string) (*githubCheckToken, error) {
	body, err := json.Marshal(map[string]string{"access_token": raw})
	if err != nil {
		return nil, errorf(ReasonInternal, p.name, "check-token request: %v", err)
	}
	u := p.api + "/applications/" + url.PathEscape(p.clientID) + "/token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, errorf(ReasonInternal, p.name, "check-token request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(p.clientID, p.clientSecret)
	var ct githubCheckToken
	githubHeaders(req)
	if _, err := p.idp.doJSON(req, "check_token", &ct); err != nil {
		var se *statusError
		if !errors.As(err, &se) {
			return nil, err
		}
		switch se.status {
		case http.StatusNotFound:
			// GitHub answers 404 alike for tokens of other apps, revoked
			// tokens and a wrong client_secret.
			return nil, errorf(ReasonAudience, p.name, "token was not issued to client_id %s (GitHub does not know it for this OAuth app: another app's token, a personal access token, revoked, or a wrong client_secret)", quote(p.clientID))
		case http.StatusUnprocessableEntity:
			return nil, errorf(ReasonInactive, p.name, "GitHub's check-token API refused the token as invalid (HTTP 422)")
		default:
			return nil, errorf(ReasonUnavailable, p.name, "GitHub's check-token API answered HTTP %d; check api_url, client_id and client_secret", se.status)
		}
	}
	return &ct, nil
}

// user reads /user with the token; the answer's headers carry its expiry.
func (p *githubProcessor) user(ctx context.Context, raw string) (*githubUser, http.Header, error) {
	var u githubUser
	hdr, err := p.get(ctx, "user", p.api+"/user", raw, &u)
	if err != nil {
		var se *statusError
		if !errors.As(err, &se) {
			return nil, nil, err
		}
		switch se.status {
		case http.StatusUnauthorized:
			return nil, nil, errorf(ReasonInactive, p.name, "GitHub says the token is not valid (expired, revoked or unknown)")
		case http.StatusForbidden:
			return nil, nil, errorf(ReasonInactive, p.name, "GitHub refused to show the token's user (HTTP 403); installation tokens (ghs_) and tokens without user access name no person")
		default:
			return nil, nil, errorf(ReasonUnavailable, p.name, "GitHub's /user answered HTTP %d; check api_url", se.status)
		}
	}
	if u.ID == 0 || u.Login == "" {
		return nil, nil, errorf(ReasonClaims, p.name, "GitHub's /user answer has no id or login")
	}
	return &u, hdr, nil
}

// primaryEmail returns the primary address from /user/emails if GitHub has
// verified it. Reading it needs the user:email scope (or the "Email
// addresses" permission of a GitHub App).
func (p *githubProcessor) primaryEmail(ctx context.Context, raw string) (string, error) {
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if _, err := p.get(ctx, "user_emails", p.api+"/user/emails", raw, &emails); err != nil {
		var se *statusError
		if !errors.As(err, &se) {
			return "", err
		}
		if se.status == http.StatusUnauthorized {
			return "", errorf(ReasonInactive, p.name, "GitHub says the token is not valid (expired, revoked or unknown)")
		}
		return "", errorf(ReasonClaims, p.name, "username_claim is email, but the token cannot read /user/emails (HTTP %d); request the user:email scope, or use username_claim: login", se.status)
	}
	for _, e := range emails {
		if e.Primary && e.Verified && e.Email != "" {
			return e.Email, nil
		}
	}
	return "", errorf(ReasonClaims, p.name, "username_claim is email, but the GitHub account has no verified primary e-mail address; verify it on GitHub, or use username_claim: login")
}

// groups lists the person's organisations ("org") and teams
// ("org/team-slug"). A 403 or 404 means the token may not read them (it
// lacks the read:org scope, or the GitHub App the members permission):
// the person then has no groups, which is not a failure.
func (p *githubProcessor) groups(ctx context.Context, raw string) ([]any, error) {
	groups := []any{}
	seen := map[string]bool{}
	add := func(g string) {
		if g != "" && !seen[g] {
			seen[g] = true
			groups = append(groups, g)
		}
	}
	type org struct {
		Login string `json:"login"`
	}
	err := githubList(ctx, p, "user_orgs", p.api+"/user/orgs", raw, func(orgs []org) {
		for _, o := range orgs {
			add(o.Login)
		}
	})
	if err != nil {
		return nil, err
	}
	type team struct {
		Slug         string `json:"slug"`
		Organization struct {
			Login string `json:"login"`
		} `json:"organization"`
	}
	err = githubList(ctx, p, "user_teams", p.api+"/user/teams", raw, func(teams []team) {
		for _, t := range teams {
			if t.Organization.Login != "" && t.Slug != "" {
				add(t.Organization.Login + "/" + t.Slug)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return groups, nil
}

// githubList reads a paginated listing, calling collect with each page. It follows Link rel="next" for at most githubMaxPages pages, and
// only within api_url's origin so that the token never leaves for another
// host. 403 and 404 end the listing without error (see groups).
func githubList[T any](ctx context.Context, p *githubProcessor, endpoint, u, raw string, collect func([]T)) error {
	next := u + "?per_page=" + strconv.Itoa(githubPerPage)
	for i := 0; i < githubMaxPages && next != ""; i++ {
		var page []T
		hdr, err := p.get(ctx, endpoint, next, raw, &page)
		if err != nil {
			var se *statusError
			if !errors.As(err, &se) {
				return err
			}
			switch se.status {
			case http.StatusForbidden, http.StatusNotFound:
				return nil
			case http.StatusUnauthorized:
				return errorf(ReasonInactive, p.name, "GitHub says the token is not valid (expired, revoked or unknown)")
			default:
				return errorf(ReasonUnavailable, p.name, "GitHub's %s endpoint answered HTTP %d", endpoint, se.status)
			}
		}
		collect(page)
		next = ""
		if link := nextLink(hdr.Get("Link")); link != "" {
			n, err := url.Parse(link)
			if err != nil || n.Scheme != p.apiURL.Scheme || n.Host != p.apiURL.Host {
				return errorf(ReasonUnavailable, p.name, "GitHub's %s pagination points outside api_url %s; set api_url to the address GitHub names itself by", endpoint, p.api)
			}
			next = n.String()
		}
	}
	return nil
}

// get sends an authenticated GET to the GitHub API.
func (p *githubProcessor) get(ctx context.Context, endpoint, u, raw string, out any) (http.Header, error) {
	return p.idp.getBearer(ctx, endpoint, u, raw, out, githubHeaders)
}

// githubHeaders asks for GitHub's media type and API version.
func githubHeaders(req *http.Request) {
	req.Header.Set("Accept", githubMediaType)
	req.Header.Set("X-GitHub-Api-Version", githubAPIVersion)
	req.Header.Set("User-Agent", "clickgate")
}

// parseGitHubExpiry reads the token expiration header. GitHub writes
// "2026-12-01 12:00:00 UTC"; a numeric offset is accepted too.
func parseGitHubExpiry(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, false
	}
	for _, layout := range []string{"2006-01-02 15:04:05 UTC", "2006-01-02 15:04:05 -0700", time.RFC3339} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// nextLink returns the rel="next" target of an RFC 8288 Link header.
func nextLink(header string) string {
	for _, part := range strings.Split(header, ",") {
		target, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		target = strings.TrimSpace(target)
		if !ok || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
			continue
		}
		for _, param := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(param), "=")
			if !strings.EqualFold(strings.TrimSpace(k), "rel") {
				continue
			}
			for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)) {
				if strings.EqualFold(rel, "next") {
					return target[1 : len(target)-1]
				}
			}
		}
	}
	return ""
}
