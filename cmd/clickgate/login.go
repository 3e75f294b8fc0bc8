package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/login"
)

// defaultServer is the clickgate server of login, whoami and query when
// none is given or remembered (the address of server.listen's default).
const defaultServer = "http://127.0.0.1:8443"

// serverEnv names a clickgate server for login, whoami and query.
const serverEnv = "CLICKGATE_SERVER"

// clientSecretEnv gives --client-secret without showing it in ps.
const clientSecretEnv = "CLICKGATE_CLIENT_SECRET"

func runLogin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("login", "login [--server URL] [--device] [--issuer URL --client-id ID [--client-secret S] [--scope S] [--audience A]] [--no-browser]", stderr)
	server := fs.String("server", "", "clickgate server whose development IdP to sign in at (issuer URL/idp), remembered for whoami and query;\ndefault $"+serverEnv+", the remembered one, or "+defaultServer)
	device := fs.Bool("device", false, "sign in with a code on another device (RFC 8628) instead of a browser on this computer")
	issuer := fs.String("issuer", "", "sign in at this OpenID provider instead of the server's development IdP (needs --client-id)")
	clientID := fs.String("client-id", "", "client ID registered at the provider (default "+config.DevIdPCLIClient+" at the development IdP)")
	clientSecret := fs.String("client-secret", "", "client secret, for a confidential client (or $"+clientSecretEnv+")")
	scope := fs.String("scope", "", "scopes to ask for, separated by spaces or commas\n(default \""+strings.Join(login.DefaultScopes, " ")+"\"; plus groups at the development IdP)")
	audience := fs.String("audience", "", "audience parameter for the access token (for providers such as Auth0)")
	noBrowser := fs.Bool("no-browser", false, "do not open a browser; print the URL to open")
	timeout := fs.Duration("timeout", login.DefaultTimeout, "give up when the sign-in is not completed within this time")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	store, err := login.NewStore("")
	if err != nil {
		return err
	}
	cur, err := store.Current()
	if err != nil {
		return err
	}

	p := login.Provider{Issuer: *issuer, ClientID: *clientID, ClientSecret: *clientSecret, Audience: *audience, Scopes: login.ParseScopes(*scope)}
	if p.ClientSecret == "" {
		p.ClientSecret = os.Getenv(clientSecretEnv)
	}
	srv := *server
	if srv != "" || p.Issuer == "" {
		if srv, err = resolveServer(srv, cur); err != nil {
			return err
		}
	}
	if p.Issuer == "" {
		p.Issuer = srv + config.DevIdPPath
		if p.ClientID == "" {
			p.ClientID = config.DevIdPCLIClient
		}
		if len(p.Scopes) == 0 {
			p.Scopes = login.DevIdPScopes
		}
	} else {
		// Kept as spelled: discovery compares it exactly, and some
		// issuers end in "/" (the token cache ignores the difference).
		if p.ClientID == "" {
			fmt.Fprintln(stderr, "--issuer needs --client-id: the client registered at that provider for clickgate login")
			fs.Usage()
			return errUsage
		}
	}

	o := login.FlowOptions{Prompt: stderr, Timeout: *timeout}
	if !*noBrowser && !*device {
		o.Open = login.OpenBrowser
	}
	var sess *login.Session
	if *device {
		sess, err = login.Device(ctx, p, o)
	} else {
		sess, err = login.Browser(ctx, p, o)
	}
	var de *login.DiscoveryError
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled):
		return errors.New("sign-in cancelled")
	case errors.As(err, &de) && *issuer == "":
		return fmt.Errorf("%s\n(is 'clickgate serve' running at %s with dev_idp enabled? To sign in at your company's IdP, use --issuer URL --client-id ID)",
			strings.TrimPrefix(err.Error(), "login: "), srv)
	default:
		return errors.New(strings.TrimPrefix(err.Error(), "login: "))
	}
	if err := store.Save(sess); err != nil {
		return err
	}
	next := &login.Current{Server: cur.Server, Issuer: p.Issuer, ClientID: p.ClientID}
	if srv != "" {
		next.Server = srv
	}
	if err := store.SetCurrent(next); err != nil {
		return err
	}
	who := sess.Who()
	if who == "" {
		who = "you"
	}
	fmt.Fprintf(stdout, "Signed in as %s at %s.\n", who, p.Issuer)
	if sess.RefreshToken == "" {
		fmt.Fprintln(stderr, "The provider issued no refresh token: sign in again when the access token expires (ask for offline_access with --scope).")
	}
	if next.Server != "" {
		fmt.Fprintf(stderr, "clickgate server: %s (try 'clickgate whoami')\n", next.Server)
	}
	return nil
}

// resolveServer picks the clickgate server: the flag, $CLICKGATE_SERVER,
// the one remembered at login, else defaultServer; it must be an http(s)
// URL and is returned without a trailing slash.
func resolveServer(flagValue string, cur *login.Current) (string, error) {
	s := flagValue
	if s == "" {
		s = os.Getenv(serverEnv)
	}
	if s == "" && cur != nil {
		s = cur.Server
	}
	if s == "" {
		s = defaultServer
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--server %q is not an http(s) URL such as %s", s, defaultServer)
	}
	return strings.TrimRight(s, "/"), nil
}

// selectFlags adds --issuer and --client-id, which choose a cached sign-in
// other than the last one.
func selectFlags(fs *flag.FlagSet) (issuer, clientID *string) {
	issuer = fs.String("issuer", "", "use the sign-in at this issuer (default: the last 'clickgate login')")
	clientID = fs.String("client-id", "", "with --issuer: the client of that sign-in (default "+config.DevIdPCLIClient+")")
	return
}

// chosenLogin is the issuer and client of the sign-in to use.
func chosenLogin(store *login.Store, issuer, clientID string) (string, string, error) {
	if issuer != "" {
		if clientID == "" {
			clientID = config.DevIdPCLIClient
		}
		return strings.TrimRight(issuer, "/"), clientID, nil
	}
	cur, err := store.Current()
	if err != nil {
		return "", "", err
	}
	if cur.Issuer == "" || cur.ClientID == "" {
		return "", "", fmt.Errorf("%w: run 'clickgate login' first", login.ErrNotSignedIn)
	}
	return cur.Issuer, cur.ClientID, nil
}

// freshToken is the access token of the chosen sign-in, refreshed when it
// has less than minValid left.
func freshToken(ctx context.Context, store *login.Store, issuer, clientID string, minValid time.Duration) (*login.Session, error) {
	iss, cid, err := chosenLogin(store, issuer, clientID)
	if err != nil {
		return nil, err
	}
	return store.Fresh(ctx, nil, iss, cid, minValid, nil)
}

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("token", "token [--min-valid D] [--issuer URL [--client-id ID]]", stderr)
	minValid := fs.Duration("min-valid", login.DefaultMinValid, "refresh first when the access token has less than this left")
	issuer, clientID := selectFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	store, err := login.NewStore("")
	if err != nil {
		return err
	}
	sess, err := freshToken(ctx, store, *issuer, *clientID, *minValid)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, sess.AccessToken)
	return err
}

func runLogout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("logout", "logout [--all | --issuer URL [--client-id ID]]", stderr)
	all := fs.Bool("all", false, "sign out of every cached sign-in")
	issuer, clientID := selectFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	store, err := login.NewStore("")
	if err != nil {
		return err
	}
	if *all {
		entries, err := store.Entries()
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			fmt.Fprintln(stdout, "Not signed in anywhere.")
		}
		for _, e := range entries {
			if e.Issuer == "" {
				if err := os.Remove(e.Path); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "Removed the unreadable token cache %s.\n", e.Path)
				continue
			}
			if err := logoutOne(ctx, store, e.Issuer, e.ClientID, stdout, stderr); err != nil {
				return err
			}
		}
		return nil
	}
	iss, cid, err := chosenLogin(store, *issuer, *clientID)
	if errors.Is(err, login.ErrNotSignedIn) {
		fmt.Fprintln(stdout, "Not signed in.")
		return nil
	}
	if err != nil {
		return err
	}
	return logoutOne(ctx, store, iss, cid, stdout, stderr)
}

func logoutOne(ctx context.Context, store *login.Store, issuer, clientID string, stdout, stderr io.Writer) error {
	res, err := store.Logout(ctx, nil, issuer, clientID)
	if errors.Is(err, login.ErrNotSignedIn) {
		fmt.Fprintf(stdout, "Not signed in at %s as %s.\n", issuer, clientID)
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case res.Revoked:
		fmt.Fprintf(stdout, "Signed out of %s: tokens revoked and removed from this computer.\n", issuer)
	case res.NoRevocation:
		fmt.Fprintf(stdout, "Signed out of %s: tokens removed from this computer (the provider offers no revocation; issued tokens stay valid until they expire).\n", issuer)
	default:
		fmt.Fprintf(stdout, "Signed out of %s: tokens removed from this computer.\n", issuer)
		fmt.Fprintf(stderr, "warning: they were not revoked at the provider: %v\n", res.RevokeErr)
	}
	return nil
}
