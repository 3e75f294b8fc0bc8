package login

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// CallbackPath is the loopback redirect's path:
// http://127.0.0.1:<port>/callback.
const CallbackPath = "/callback"

// DefaultTimeout bounds a sign-in in the browser or on another device.
const DefaultTimeout = 5 * time.Minute

// FlowOptions are what a sign-in needs besides the provider; zero values
// are sensible.
type FlowOptions struct {
	HTTPClient *http.Client
	// Prompt receives the instructions for the person (the URL to open,
	// the device code); io.Discard when nil.
	Prompt io.Writer
	// Open opens a URL in the person's browser (OpenBrowser, say); when nil
	// the URL is only printed. Its failure is not an error: the URL is
	// printed either way.
	Open func(url string) error
	// Timeout bounds the whole sign-in; DefaultTimeout when zero.
	Timeout time.Duration
	// Now is the clock of the cached expiry; time.Now when nil.
	Now func() time.Time
	// onListen, for tests, receives the authorization URL once the
	// loopback listener accepts connections.
	onListen func(authURL string)
}

func (o *FlowOptions) defaults() {
	if o.Prompt == nil {
		o.Prompt = io.Discard
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = defaultHTTPClient
	}
}

// Browser signs a person in with the authorization code grant and PKCE
// (S256) through a loopback redirect (RFC 8252): it listens on a random
// port of 127.0.0.1, sends the browser to the provider's authorization
// endpoint, and exchanges the code that comes back with a matching state.
func Browser(ctx context.Context, p Provider, o FlowOptions) (*Session, error) {
	o.defaults()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	m, err := Discover(ctx, o.HTTPClient, p.Issuer)
	if err != nil {
		return nil, err
	}
	if m.AuthorizationEndpoint == "" {
		return nil, fmt.Errorf("login: %s has no authorization endpoint; try --device", p.Issuer)
	}
	if len(m.CodeChallengeMethodsSupported) > 0 && !slices.Contains(m.CodeChallengeMethodsSupported, "S256") {
		return nil, fmt.Errorf("login: %s does not support PKCE with S256 (it offers %v)", p.Issuer, m.CodeChallengeMethodsSupported)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("login: cannot listen on the loopback address for the browser's answer: %w", err)
	}
	redirect := "http://127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port) + CallbackPath
	cfg := p.oauthConfig(m, redirect)
	state := randomString()
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if p.Audience != "" {
		opts = append(opts, oauth2.SetAuthURLParam("audience", p.Audience))
	}
	authURL := cfg.AuthCodeURL(state, opts...)

	cb := &callback{
		state:  state,
		prompt: o.Prompt,
		result: make(chan callbackResult, 1),
		exchange: func(code string) (*oauth2.Token, error) {
			return cfg.Exchange(withClient(ctx, o.HTTPClient), code, oauth2.VerifierOption(verifier))
		},
	}
	srv := &http.Server{Handler: cb, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	defer func() {
		// Let the browser receive its page, then stop listening.
		sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
	}()

	opened := false
	if o.Open != nil {
		opened = o.Open(authURL) == nil
	}
	if opened {
		fmt.Fprintf(o.Prompt, "Opening your browser to sign in at %s.\nIf it does not open, visit this URL:\n\n  %s\n\n", p.Issuer, authURL)
	} else {
		fmt.Fprintf(o.Prompt, "To sign in at %s, open this URL in a browser on this computer:\n\n  %s\n\n", p.Issuer, authURL)
	}
	fmt.Fprintf(o.Prompt, "Waiting for the sign-in (up to %s; Ctrl-C to stop)...\n", o.Timeout.Round(time.Second))
	if o.onListen != nil {
		o.onListen(authURL)
	}

	select {
	case r := <-cb.result:
		if r.err != nil {
			return nil, r.err
		}
		return newSession(p, m, r.tok, o.Now()), nil
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("login: no sign-in arrived from the browser within %s; run 'clickgate login' again", o.Timeout.Round(time.Second))
		}
		return nil, fmt.Errorf("login: %w", ctx.Err())
	}
}

type callbackResult struct {
	tok *oauth2.Token
	err error
}

// callback is the loopback listener's handler. It accepts one answer
// whose state matches; the first such answer ends the sign-in, whether it
// carries a code or an error.
type callback struct {
	state    string
	prompt   io.Writer
	exchange func(code string) (*oauth2.Token, error)
	result   chan callbackResult

	mu   sync.Mutex
	done bool
}

func (c *callback) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != CallbackPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writePage(w, http.StatusMethodNotAllowed, false, "Sign-in failed", "This address only receives the identity provider's redirect.")
		return
	}
	q := r.URL.Query()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(c.state)) != 1 {
		fmt.Fprintln(c.prompt, "Ignored an answer on the loopback address whose state does not match this sign-in (still waiting).")
		writePage(w, http.StatusBadRequest, false, "Sign-in refused",
			"This answer does not belong to the sign-in that clickgate started (its state does not match), so it was ignored. "+
				"If you started clickgate login, use the link it printed.")
		return
	}
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		fmt.Fprintln(c.prompt, "Refused a second answer on the loopback address: this sign-in already has one.")
		writePage(w, http.StatusBadRequest, false, "Sign-in already completed",
			"clickgate already received an answer for this sign-in; a second one is refused. You can close this tab.")
		return
	}
	c.done = true
	c.mu.Unlock()

	if e := q.Get("error"); e != "" {
		msg := e
		if d := q.Get("error_description"); d != "" {
			msg += ": " + d
		}
		writePage(w, http.StatusOK, false, "Sign-in failed", "The identity provider did not sign you in ("+msg+"). Return to the terminal.")
		c.result <- callbackResult{err: fmt.Errorf("login: the identity provider did not sign you in: %s", msg)}
		return
	}
	code := q.Get("code")
	if code == "" {
		writePage(w, http.StatusBadRequest, false, "Sign-in failed", "The identity provider's answer has no code. Return to the terminal and try again.")
		c.result <- callbackResult{err: errors.New("login: the identity provider's answer has no code")}
		return
	}
	tok, err := c.exchange(code)
	if err != nil {
		err = tokenError("exchanging the code", err)
		writePage(w, http.StatusOK, false, "Sign-in failed", "clickgate could not complete the sign-in. Return to the terminal for details.")
		c.result <- callbackResult{err: err}
		return
	}
	writePage(w, http.StatusOK, true, "Signed in", "You are signed in to clickgate. You can close this tab and return to the terminal.")
	c.result <- callbackResult{tok: tok}
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}} · clickgate</title>
<style>
  :root { color-scheme: light dark; --fg: #1b1f24; --bg: #f3f4f6; --card: #ffffff; --line: #9ca3af; --ok: #166534; --err: #991b1b; }
  @media (prefers-color-scheme: dark) { :root { --fg: #f3f4f6; --bg: #111827; --card: #1f2937; --line: #6b7280; --ok: #86efac; --err: #fecaca; } }
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
         background: var(--bg); color: var(--fg); font: 1.0625rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  main { max-width: 28rem; margin: 1.5rem; padding: 2rem; background: var(--card); border: 1px solid var(--line); border-radius: .75rem; }
  h1 { font-size: 1.5rem; margin: 0 0 .5rem; color: {{if .OK}}var(--ok){{else}}var(--err){{end}}; }
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p role="{{if .OK}}status{{else}}alert{{end}}">{{.Text}}</p>
</main>
</body>
</html>
`))

func writePage(w http.ResponseWriter, status int, ok bool, title, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(status)
	pageTemplate.Execute(w, struct {
		OK          bool
		Title, Text string
	}{ok, title, text})
}

// randomString is 32 random bytes, base64url-encoded.
func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
