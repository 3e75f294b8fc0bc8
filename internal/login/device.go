package login

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// Device signs a person in with the device authorization grant (RFC 8628):
// it prints where to go and the code to enter there, then polls the token
// endpoint at the interval the provider asks for (slower after slow_down)
// until the person has approved, denied, or the code has expired.
func Device(ctx context.Context, p Provider, o FlowOptions) (*Session, error) {
	o.defaults()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	m, err := Discover(ctx, o.HTTPClient, p.Issuer)
	if err != nil {
		return nil, err
	}
	if m.DeviceAuthorizationEndpoint == "" {
		return nil, fmt.Errorf("login: %s offers no device authorization (RFC 8628); sign in without --device", p.Issuer)
	}
	cfg := p.oauthConfig(m, "")
	var opts []oauth2.AuthCodeOption
	if p.Audience != "" {
		opts = append(opts, oauth2.SetAuthURLParam("audience", p.Audience))
	}
	authOpts := opts
	if p.ClientSecret != "" {
		// The device authorization request carries no Authorization header
		// in x/oauth2; a confidential client authenticates in the form.
		authOpts = append(authOpts[:len(authOpts):len(authOpts)], oauth2.SetAuthURLParam("client_secret", p.ClientSecret))
	}
	hc := withClient(ctx, o.HTTPClient)
	da, err := cfg.DeviceAuth(hc, authOpts...)
	if err != nil {
		return nil, tokenError("device authorization", err)
	}
	if da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return nil, errors.New("login: the identity provider's device authorization answer lacks device_code, user_code or verification_uri")
	}
	fmt.Fprintf(o.Prompt, "To sign in at %s, open\n\n  %s\n\nand enter the code\n\n  %s\n\n", p.Issuer, da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(o.Prompt, "(or open %s, which fills in the code)\n\n", da.VerificationURIComplete)
	}
	if !da.Expiry.IsZero() {
		fmt.Fprintf(o.Prompt, "Waiting for the sign-in (the code expires in %s; Ctrl-C to stop)...\n", time.Until(da.Expiry).Round(time.Second))
	} else {
		fmt.Fprintln(o.Prompt, "Waiting for the sign-in (Ctrl-C to stop)...")
	}
	if o.onListen != nil {
		o.onListen(da.VerificationURIComplete)
	}
	tok, err := cfg.DeviceAccessToken(hc, da, opts...)
	if err != nil {
		var re *oauth2.RetrieveError
		switch {
		case errors.As(err, &re) && re.ErrorCode == "access_denied":
			return nil, errors.New("login: the sign-in was denied on the verification page")
		case errors.As(err, &re) && re.ErrorCode == "expired_token",
			errors.Is(err, context.DeadlineExceeded):
			return nil, errors.New("login: the code expired before the sign-in was completed; run 'clickgate login --device' again")
		}
		return nil, tokenError("device sign-in", err)
	}
	return newSession(p, m, tok, o.Now()), nil
}
