// Package oidcdiscovery reads an OpenID provider's discovery document
// (OpenID Connect Discovery 1.0) and checks that it speaks for the issuer
// it was read for. It is clickgate's only discovery client: the oidc token
// processors, the broker's upstream sign-in and clickgate login use it, so
// they agree on where the document is and on which issuer it must name.
//
// The issuer rule (§4.3): the document's issuer must equal the configured
// issuer exactly, byte for byte. A trailing slash is part of an issuer: it
// is removed only to build the document's URL (§4.1), so an issuer
// configured as https://idp.example/ is found at
// https://idp.example/.well-known/openid-configuration and must be named
// there as https://idp.example/, slash and all (as Auth0 names its
// issuers); https://idp.example does not match it, nor the other way round.
// The tokens of that provider carry the same string as iss, which the
// processors compare exactly too.
package oidcdiscovery

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// WellKnown is the path of the document below the issuer.
const WellKnown = "/.well-known/openid-configuration"

// MaxBytes bounds a document read by HTTP.
const MaxBytes = 1 << 20

// Timeout bounds one read of a document by HTTP, whatever the client's
// own timeout (http.DefaultClient has none): a provider that accepts the
// connection and never answers fails the read instead of hanging it.
const Timeout = 10 * time.Second

// timeout is Timeout; tests shorten it.
var timeout = Timeout

// Document is the part of the provider metadata clickgate uses (OpenID
// Connect Discovery 1.0 §3, RFC 8414 §2).
type Document struct {
	Issuer                        string   `json:"issuer"`
	AuthorizationEndpoint         string   `json:"authorization_endpoint"`
	TokenEndpoint                 string   `json:"token_endpoint"`
	DeviceAuthorizationEndpoint   string   `json:"device_authorization_endpoint"`
	RevocationEndpoint            string   `json:"revocation_endpoint"`
	JWKSURI                       string   `json:"jwks_uri"`
	UserinfoEndpoint              string   `json:"userinfo_endpoint"`
	IntrospectionEndpoint         string   `json:"introspection_endpoint"`
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
}

// URL is where issuer's document is: issuer without its terminating "/",
// then WellKnown (§4.1).
func URL(issuer string) string {
	return strings.TrimRight(issuer, "/") + WellKnown
}

// Get reads the document at url into doc. HTTP is the plain one; a caller
// with HTTP handling of its own (metrics, classes of errors) passes its own.
type Get func(ctx context.Context, url string, doc *Document) error

// Fetch reads issuer's document with get and checks that it names issuer
// (Check). Errors of get are returned as they are; a document for another
// issuer gives an *IssuerError.
func Fetch(ctx context.Context, get Get, issuer string) (*Document, error) {
	var d Document
	if err := get(ctx, URL(issuer), &d); err != nil {
		return nil, err
	}
	if err := d.Check(issuer); err != nil {
		return nil, err
	}
	return &d, nil
}

// Check applies the issuer rule: d must name issuer exactly.
func (d *Document) Check(issuer string) error {
	if d.Issuer != issuer {
		return &IssuerError{URL: URL(issuer), Configured: issuer, Named: d.Issuer}
	}
	return nil
}

// IssuerError is a document that names another issuer than the one it was
// read for.
type IssuerError struct {
	URL        string // where the document was read
	Configured string // the issuer it was read for
	Named      string // the issuer it names
}

func (e *IssuerError) Error() string {
	named := e.Named
	if len(named) > 200 {
		named = named[:200] + "…"
	}
	return fmt.Sprintf("discovery at %s names issuer %q, not the configured %q; set the issuer exactly as the provider spells it, trailing slash included",
		e.URL, named, e.Configured)
}

// StatusError is an answer other than 200 OK.
type StatusError struct {
	URL    string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("discovery at %s answered HTTP %d", e.URL, e.Status)
}

// HTTP returns a Get over client (http.DefaultClient when nil): a 200
// answer of at most MaxBytes of JSON, within Timeout. Other statuses are
// *StatusError.
func HTTP(client *http.Client) Get {
	if client == nil {
		client = http.DefaultClient
	}
	return func(ctx context.Context, url string, doc *Document) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("discovery at %s: %w", url, err)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("discovery at %s: %w", url, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBytes+1))
		if err != nil {
			return fmt.Errorf("discovery at %s: %w", url, err)
		}
		if resp.StatusCode != http.StatusOK {
			return &StatusError{URL: url, Status: resp.StatusCode}
		}
		if len(body) > MaxBytes {
			return fmt.Errorf("discovery at %s: the document is larger than %d bytes", url, MaxBytes)
		}
		if err := json.Unmarshal(body, doc); err != nil {
			return fmt.Errorf("discovery at %s: not JSON: %w", url, err)
		}
		return nil
	}
}
