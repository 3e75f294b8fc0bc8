package login

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// LogoutResult says what Logout did.
type LogoutResult struct {
	// Removed: a cached sign-in was deleted.
	Removed bool
	// Revoked: the provider confirmed the revocation (RFC 7009).
	Revoked bool
	// NoRevocation: the provider advertises no revocation endpoint, so the
	// tokens stay valid there until they expire.
	NoRevocation bool
	// RevokeErr is why revocation failed (the cache is removed anyway).
	RevokeErr error
}

// Logout revokes the cached sign-in at issuer for clientID where the
// provider offers revocation (the refresh token, which ends the whole
// grant at most providers; the access token when there is no refresh
// token) and removes it from the cache. A cache file that cannot be used
// (readable by others, damaged) is removed without revoking.
// ErrNotSignedIn when there is nothing to remove.
func (s *Store) Logout(ctx context.Context, client *http.Client, issuer, clientID string) (*LogoutResult, error) {
	res := &LogoutResult{}
	sess, err := s.Load(issuer, clientID)
	switch {
	case errors.Is(err, ErrNotSignedIn):
		return res, err
	case err != nil:
		res.RevokeErr = err
	case sess.RevocationEndpoint == "":
		res.NoRevocation = true
	default:
		tok, hint := sess.RefreshToken, "refresh_token"
		if tok == "" {
			tok, hint = sess.AccessToken, "access_token"
		}
		if res.RevokeErr = Revoke(ctx, client, sess.RevocationEndpoint, sess.ClientID, sess.ClientSecret, tok, hint); res.RevokeErr == nil {
			res.Revoked = true
		}
	}
	if err := s.Remove(issuer, clientID); err != nil {
		return res, err
	}
	res.Removed = true
	return res, nil
}

// Revoke asks endpoint to revoke token (RFC 7009), authenticating as the
// client: client_id in the form for a public client, HTTP Basic with the
// secret for a confidential one.
func Revoke(ctx context.Context, client *http.Client, endpoint, clientID, clientSecret, token, hint string) error {
	if client == nil {
		client = defaultHTTPClient
	}
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	if clientSecret == "" {
		form.Set("client_id", clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("login: revocation: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if clientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("login: revocation at %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("login: revocation at %s: HTTP %d %s", endpoint, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}
