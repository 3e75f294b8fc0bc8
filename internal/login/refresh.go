package login

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// Fresh returns the cached sign-in at issuer for clientID with an access
// token that has at least minValid of its lifetime left (DefaultMinValid
// when zero), refreshing it first when needed and saving the new tokens.
// Concurrent callers refresh once: the file is locked while refreshing,
// since a rotated refresh token works only once.
func (s *Store) Fresh(ctx context.Context, client *http.Client, issuer, clientID string, minValid time.Duration, now func() time.Time) (*Session, error) {
	if minValid <= 0 {
		minValid = DefaultMinValid
	}
	if now == nil {
		now = time.Now
	}
	sess, err := s.Load(issuer, clientID)
	if err != nil {
		return nil, err
	}
	if sess.ValidFor(now(), minValid) {
		return sess, nil
	}
	if err := s.ensureTokensDir(); err != nil {
		return nil, err
	}
	unlock, err := lockFile(s.Path(issuer, clientID) + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another process may have refreshed while this one waited.
	if sess, err = s.Load(issuer, clientID); err != nil {
		return nil, err
	}
	if sess.ValidFor(now(), minValid) {
		return sess, nil
	}
	if err := sess.Refresh(ctx, client, now()); err != nil {
		return nil, err
	}
	if err := s.Save(sess); err != nil {
		return nil, err
	}
	return sess, nil
}

// Refresh replaces sess's tokens by new ones from the refresh token grant.
// It wraps ErrSignInExpired when the provider no longer accepts the
// refresh token or there is none.
func (sess *Session) Refresh(ctx context.Context, client *http.Client, now time.Time) error {
	if sess.RefreshToken == "" {
		return fmt.Errorf("%w: the access token has expired and %s issued no refresh token (was offline_access granted?); run 'clickgate login'", ErrSignInExpired, sess.Issuer)
	}
	cfg := &oauth2.Config{
		ClientID:     sess.ClientID,
		ClientSecret: sess.ClientSecret,
		Endpoint:     oauth2.Endpoint{TokenURL: sess.TokenEndpoint},
	}
	tok, err := cfg.TokenSource(withClient(ctx, client), &oauth2.Token{RefreshToken: sess.RefreshToken}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && (re.ErrorCode == "invalid_grant" || re.ErrorCode == "invalid_token") {
			return fmt.Errorf("%w: %s no longer accepts the refresh token (expired or revoked); run 'clickgate login'", ErrSignInExpired, sess.Issuer)
		}
		return tokenError("refreshing the access token", err)
	}
	sess.update(tok, now)
	return nil
}
