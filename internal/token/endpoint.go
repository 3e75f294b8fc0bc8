package token

import (
	"context"
	"fmt"
)

// Endpoint is a processor's OAuth token endpoint and the client
// credentials clickgate uses there (RFC 8693 token exchange).
type Endpoint struct {
	URL          string
	ClientID     string
	ClientSecret string
}

// tokenEndpointer is a processor that knows its token endpoint.
type tokenEndpointer interface {
	TokenEndpoint(ctx context.Context) (Endpoint, error)
}

// TokenEndpoint returns the token endpoint of the named processor.
func (v *Verifier) TokenEndpoint(ctx context.Context, processor string) (Endpoint, error) {
	for _, p := range v.processors {
		if p.Name() != processor {
			continue
		}
		if te, ok := p.(tokenEndpointer); ok {
			return te.TokenEndpoint(ctx)
		}
		return Endpoint{}, fmt.Errorf("processor %s has no token endpoint", processor)
	}
	return Endpoint{}, fmt.Errorf("no processor %s", processor)
}

func (p *jwtProcessor) TokenEndpoint(context.Context) (Endpoint, error) {
	if p.exchange.URL == "" {
		return Endpoint{}, fmt.Errorf("processor %s: set token_url (and client_id, client_secret) for token exchange", p.Name())
	}
	return p.exchange, nil
}

func (p *oidcProcessor) TokenEndpoint(ctx context.Context) (Endpoint, error) {
	e := p.exchange
	if e.URL == "" {
		ep, err := p.endpoints(ctx)
		if err != nil {
			return Endpoint{}, err
		}
		e.URL = ep.tokenURL
	}
	if e.URL == "" {
		return Endpoint{}, fmt.Errorf("processor %s: discovery has no token_endpoint; set token_url", p.name)
	}
	return e, nil
}
