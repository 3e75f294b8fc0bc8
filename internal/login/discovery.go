package login

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/clickgate/clickgate/internal/oidcdiscovery"
)

// Metadata is the part of an OpenID provider's discovery document that
// sign-in needs.
type Metadata = oidcdiscovery.Document

// DiscoveryError is why an issuer's discovery document could not be had:
// the provider is unreachable, or the URL is not an issuer's.
type DiscoveryError struct {
	Issuer string
	Err    error
}

func (e *DiscoveryError) Error() string { return e.Err.Error() }
func (e *DiscoveryError) Unwrap() error { return e.Err }

// Discover fetches issuer's discovery document and checks that it speaks
// for issuer, spelled exactly as given (oidcdiscovery's rule). Its errors
// are *DiscoveryError.
func Discover(ctx context.Context, client *http.Client, issuer string) (*Metadata, error) {
	m, err := discover(ctx, client, issuer)
	if err != nil {
		return nil, &DiscoveryError{Issuer: issuer, Err: err}
	}
	return m, nil
}

func discover(ctx context.Context, client *http.Client, issuer string) (*Metadata, error) {
	if client == nil {
		client = defaultHTTPClient
	}
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("login: issuer %q is not an http(s) URL", issuer)
	}
	m := &Metadata{}
	err = oidcdiscovery.HTTP(client)(ctx, oidcdiscovery.URL(issuer), m)
	if err == nil {
		// --issuer typed with or without the provider's trailing slash:
		// the document (its URL drops the slash) speaks for the provider's
		// spelling, which is then held exactly.
		if strings.TrimRight(m.Issuer, "/") == strings.TrimRight(issuer, "/") {
			issuer = m.Issuer
		}
		err = m.Check(issuer)
	}
	var se *oidcdiscovery.StatusError
	switch {
	case errors.As(err, &se):
		return nil, fmt.Errorf("login: %w (is %s an OpenID provider's issuer URL?)", err, issuer)
	case err != nil:
		return nil, fmt.Errorf("login: %w", err)
	case m.TokenEndpoint == "":
		return nil, fmt.Errorf("login: discovery at %s has no token_endpoint", oidcdiscovery.URL(issuer))
	}
	return m, nil
}
