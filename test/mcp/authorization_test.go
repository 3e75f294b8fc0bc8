package mcp_test

import (
	"bufio"
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/testkit"
)

// The authorization server scenarios of @modelcontextprotocol/conformance
// ('conformance authorization') against clickgate's OAuth broker, as a
// 'clickgate serve' process with the development IdP upstream. The suite's
// authorization-code-grant prints the authorization URL and waits for the
// redirect at its own callback server (http://127.0.0.1:PORT/callback); the
// test plays the person: it opens the URL, allows on the consent page, signs
// in at the development IdP as alice and follows the redirect to the suite.
var authorizationPassing = []string{
	"authorization-server-metadata-endpoint",
	"authorization-code-grant",
}

// authorizationClient is the pre-registered client the suite signs in with:
// a public one (PKCE only, token_endpoint_auth_method none; loopback
// redirect URIs match on any port). A confidential client cannot be tested
// this way: the suite picks "none" whenever the metadata lists it, secret or
// not (selectTokenAuthMethod), and clickgate rightly refuses a confidential
// client that does not authenticate (401). test/broker covers
// client_secret_basic and client_secret_post.
const authorizationClient = "conformance-public"

func TestAuthorizationServer(t *testing.T) {
	dir := t.TempDir()
	listen := testkit.FreeAddr(t)
	base := "http://" + listen
	cfg := fmt.Sprintf(testkit.BrokerConfig, listen, base, dir, "http://127.0.0.1:9", testkit.MappedMode) +
		"  clients:\n    - {client_id: " + authorizationClient + `, client_name: MCP conformance suite, redirect_uris: ["http://127.0.0.1/callback"]}` + "\n"
	startBroker(t, dir, listen, cfg)
	testAuthorization(t, base, authorizationClient)
}

// startBroker runs 'clickgate serve' with cfg and stops it when the test ends.
func startBroker(t *testing.T, dir, listen, cfg string) {
	t.Helper()
	cfgPath := filepath.Join(dir, "clickgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testkit.Clickgate, "serve", "--config", cfgPath)
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "CLICKGATE_") && k != "HOME" && k != "XDG_STATE_HOME" {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "CLICKGATE_STATE_DIR="+dir, "HOME="+dir)
	logs := &testkit.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("clickgate serve ignored SIGINT")
		}
		if t.Failed() {
			t.Logf("clickgate's log:\n%s", logs)
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		if resp, err := http.Get("http://" + listen + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("clickgate serve did not come up:\n%s", logs)
		}
		select {
		case err := <-exited:
			t.Fatalf("clickgate serve exited: %v\n%s", err, logs)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func testAuthorization(t *testing.T, base, clientID string) {
	node := testkit.Node22(t)
	cli := testkit.NodeModule(t, "@modelcontextprotocol/conformance/dist/index.js")
	results := t.TempDir()
	_, port, _ := strings.Cut(testkit.FreeAddr(t), ":")
	args := []string{cli, "authorization", "--url", base, "--client-id", clientID, "--resource", base + "/mcp", "--port", port, "-o", results}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = nodeEnv(t, node)
	var stderr testkit.SyncBuffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	// The person's part, for the authorization URL the suite prints.
	var (
		stdout   strings.Builder
		personMu sync.Mutex
		person   []string // what happened, for the log
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		var authorizeURL string
		for sc.Scan() {
			line := sc.Text()
			stdout.WriteString(line + "\n")
			switch {
			case strings.HasPrefix(line, base+"/oauth/authorize?"):
				authorizeURL = line
			case strings.HasPrefix(line, "Callback server started") && authorizeURL != "":
				// The suite prints the URL before its callback server
				// listens: start only once it does.
				go func(u string) {
					msg := signInAsPerson(base, u)
					personMu.Lock()
					person = append(person, msg)
					personMu.Unlock()
				}(authorizeURL)
				authorizeURL = ""
			}
		}
	}()
	<-done
	err = cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("conformance authorization timed out\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("conformance authorization: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	personMu.Lock()
	t.Logf("the person's part: %s", strings.Join(person, "; "))
	personMu.Unlock()

	outcome := readConformanceResults(t, results)
	t.Logf("conformance authorization, %s (scenario | verdict | checks succeeded/all | failures, warnings, skips):\n%s", clientID, conformanceTable(outcome))
	for _, name := range authorizationPassing {
		if o := outcome[name]; o == nil || o.verdict != "pass" || o.succeeded == 0 {
			t.Errorf("authorization scenario %s: %+v, want pass\nstdout:\n%s\nstderr:\n%s", name, o, stdout.String(), stderr.String())
		}
	}
	for name, o := range outcome {
		if !slices.Contains(authorizationPassing, name) {
			t.Errorf("authorization scenario %s (%s) is new: add it to authorizationPassing or explain it in test/mcp/README.md", name, o.verdict)
		}
	}
	if err != nil {
		t.Errorf("conformance authorization exited with %v\nstdout:\n%s", err, stdout.String())
	}
}

// signInAsPerson opens authorizeURL in a cookie-keeping client, allows on
// clickgate's consent page, signs in at the development IdP as alice and
// follows the redirects to the client's redirect URI (the suite's callback
// server). It returns what happened, as text.
func signInAsPerson(base, authorizeURL string) string {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, target string, form url.Values) (status int, location, body string, err error) {
		var r io.Reader
		if form != nil {
			r = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, target, r)
		if err != nil {
			return 0, "", "", err
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if loc := resp.Header.Get("Location"); loc != "" {
			u, err := req.URL.Parse(loc)
			if err != nil {
				return 0, "", "", err
			}
			location = u.String()
		}
		return resp.StatusCode, location, string(b), nil
	}
	// follow follows redirects within clickgate and returns the first
	// one that leaves it, or the last page.
	follow := func(status int, location, body string, err error) (int, string, string, error) {
		for i := 0; i < 10 && err == nil && strings.HasPrefix(location, base+"/"); i++ {
			status, location, body, err = do("GET", location, nil)
		}
		return status, location, body, err
	}

	status, _, body, err := do("GET", authorizeURL, nil)
	if err != nil || status != http.StatusOK || !strings.Contains(body, "Allow access to ClickHouse?") {
		return fmt.Sprintf("consent page: %d %v %.500s", status, err, body)
	}
	request, csrf := formField(body, "request"), formField(body, "csrf")
	status, location, body, err := follow(do("POST", base+"/oauth/authorize", url.Values{"request": {request}, "csrf": {csrf}, "action": {"allow"}}))
	if err != nil || !strings.Contains(body, `name="authRequestID"`) {
		return fmt.Sprintf("after consent, want the dev IdP's login page: %d %s %v %.500s", status, location, err, body)
	}
	status, location, body, err = follow(do("POST", base+"/idp/login", url.Values{"authRequestID": {formField(body, "authRequestID")}, "username": {"alice"}, "password": {"alice-pw"}}))
	if err != nil || !strings.HasPrefix(location, "http://127.0.0.1:") || !strings.Contains(location, "/callback?") {
		return fmt.Sprintf("after the IdP's login, want a redirect to the suite's callback: %d %s %v %.500s", status, location, err, body)
	}
	u, _ := url.Parse(location)
	q := u.Query()
	status, _, body, err = do("GET", location, nil)
	return fmt.Sprintf("consent allowed, signed in as alice, redirected to the suite's callback with code (%d chars), state, iss=%s; the suite answered %d %q %v",
		len(q.Get("code")), q.Get("iss"), status, strings.TrimSpace(body), err)
}

// formField is the value of a hidden form field of page, or "".
func formField(page, name string) string {
	_, rest, ok := strings.Cut(page, `name="`+name+`" value="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return html.UnescapeString(v)
}
