package demo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// CLIClient is the development IdP's built-in public client (the one
// clickgate login uses).
const CLIClient = "clickgate-cli"

// SignIn gets an access token for a person from the development IdP at
// issuer, the way a browser would: the authorization code flow with PKCE
// for the built-in client, the login form filled in with username and
// password, the code taken from the redirect to the loopback address
// (which nobody needs to listen on) and exchanged at the token endpoint.
func SignIn(ctx context.Context, issuer, username, password string) (string, error) {
	hc := &http.Client{
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	verifier := make([]byte, 32)
	rand.Read(verifier)
	v := base64.RawURLEncoding.EncodeToString(verifier)
	sum := sha256.Sum256([]byte(v))
	state := base64.RawURLEncoding.EncodeToString(verifier[:8])
	const redirect = "http://127.0.0.1:8400/callback"

	fail := func(step string, err error) (string, error) {
		return "", fmt.Errorf("signing in %s at the dev IdP (%s): %w", username, step, err)
	}
	authorize := issuer + "/authorize?" + url.Values{
		"client_id":             {CLIClient},
		"redirect_uri":          {redirect},
		"response_type":         {"code"},
		"scope":                 {"openid profile email groups"},
		"state":                 {state},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}.Encode()
	login, err := redirectOf(ctx, hc, http.MethodGet, authorize, nil)
	if err != nil {
		return fail("authorize", err)
	}
	id := login.Query().Get("authRequestID")
	if id == "" {
		return fail("authorize", fmt.Errorf("sent to %s, not to the login page", login))
	}
	form := url.Values{"authRequestID": {id}, "username": {username}, "password": {password}}
	next, err := redirectOf(ctx, hc, http.MethodPost, login.ResolveReference(&url.URL{Path: login.Path}).String(), form)
	if err != nil {
		return fail("login form", err)
	}
	back, err := redirectOf(ctx, hc, http.MethodGet, next.String(), nil)
	if err != nil {
		return fail("callback", err)
	}
	code := back.Query().Get("code")
	if code == "" || back.Query().Get("state") != state {
		return fail("callback", fmt.Errorf("redirect %s has no code or the wrong state", back.Redacted()))
	}
	tokenForm := url.Values{
		"grant_type": {"authorization_code"}, "client_id": {CLIClient}, "code": {code},
		"redirect_uri": {redirect}, "code_verifier": {v},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, issuer+"/oauth/token", strings.NewReader(tokenForm.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return fail("token", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return fail("token", fmt.Errorf("HTTP %d: %s %s", resp.StatusCode, tok.Error, tok.Description))
	}
	return tok.AccessToken, nil
}

var pageError = regexp.MustCompile(`role="alert"[^>]*>([^<]*)<`)

// redirectOf sends one request and returns where its 302/303 points.
func redirectOf(ctx context.Context, hc *http.Client, method, rawURL string, form url.Values) (*url.URL, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		msg := strings.TrimSpace(string(b))
		if m := pageError.FindStringSubmatch(msg); m != nil { // the login page's error
			msg = html.UnescapeString(m[1])
		}
		return nil, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, msg)
	}
	loc, err := resp.Location()
	if err != nil {
		return nil, err
	}
	return loc, nil
}
