package e2e

import (
	"bufio"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// TestBrowserSignInWithTypeScriptClient signs people in the way an MCP
// desktop agent does: the TypeScript SDK's auth() finds the broker from
// /mcp's 401, identifies itself with a Client ID Metadata Document (served
// over https with the test's own CA) or registers (RFC 7591), and sends the
// browser to the consent page; Chromium allows, signs in at the development
// IdP and lands on the script's loopback redirect URI; the SDK redeems the
// code and calls run_query, which ClickHouse runs as the person's account.
// With 5 s access tokens, a call after expiry makes the SDK refresh (the
// refresh token rotates), and the old refresh token, replayed, revokes the
// whole sign-in.
func TestBrowserSignInWithTypeScriptClient(t *testing.T) {
	node := testkit.Node22(t)
	testkit.NodeModule(t, "@modelcontextprotocol/sdk/package.json")
	script, err := filepath.Abs("ts-client.mjs")
	if err != nil {
		t.Fatal(err)
	}
	ch := chtest.Start(t, chtest.Options{})
	dir := t.TempDir()

	// Client metadata documents, on https with a certificate clickgate
	// trusts only through SSL_CERT_FILE.
	docs := &documents{byPath: map[string][]byte{}}
	docServer := httptest.NewTLSServer(docs)
	t.Cleanup(docServer.Close)
	caFile := filepath.Join(dir, "test-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: docServer.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}

	addr := testkit.FreeAddr(t)
	base := "http://" + addr
	cg := startClickgate(t, "clickgate", addr, dir,
		brokerYAML(addr, base, dir, ch.HTTPURL, "5s", "  allow_private_client_urls: true\n"),
		"SSL_CERT_FILE="+caFile)

	for _, tc := range []struct {
		name     string
		cimd     bool // else dynamic registration
		user     string
		password string
		email    string
		groups   []string
		roles    []string
		chUser   string // the ClickHouse account the person's queries run as
	}{
		{name: "CIMD", cimd: true, user: "alice", password: "alice-pw", email: "alice@example.com",
			groups: []string{"ch-analysts"}, roles: []string{"analysts", "mcp_reader"}, chUser: chtest.ReaderUser},
		{name: "DCR", cimd: false, user: "bob", password: "bob-pw", email: "bob@example.com",
			groups: []string{"ch-admins"}, roles: []string{"admin", "mcp_reader"}, chUser: chtest.AdminUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clientName := "clickgate e2e " + tc.name + " client"
			docURL := docServer.URL + "/clients/" + strings.ToLower(tc.name) + ".json"
			in := map[string]any{
				"mcpUrl": base + "/mcp", "issuer": base, "clientName": clientName,
				"firstSQL": chtest.CurrentUserSQL(), "secondSQL": chtest.CurrentUserSQL(),
			}
			if tc.cimd {
				in["clientMetadataUrl"] = docURL
			}
			sdk := startScript(t, node, script, in)

			var listening struct {
				RedirectURL string `json:"redirectUrl"`
			}
			sdk.await(t, "listening", &listening)
			redirect := listening.RedirectURL
			if tc.cimd {
				docs.set(t, docURL, map[string]any{
					"client_id": docURL, "client_name": clientName, "redirect_uris": []string{redirect},
					"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
					"token_endpoint_auth_method": "none",
				})
			}

			// The SDK found the broker and settled its client id.
			var client struct {
				ClientID string `json:"clientId"`
				Issuer   string `json:"issuer"`
			}
			sdk.await(t, "client", &client)
			if tc.cimd && client.ClientID != docURL || !tc.cimd && !strings.HasPrefix(client.ClientID, "cg1.") || client.Issuer != base {
				t.Fatalf("client information %+v: want client_id %s, issuer %s", client, map[bool]string{true: docURL, false: "cg1.… (registered)"}[tc.cimd], base)
			}
			var authorize struct {
				URL string `json:"url"`
			}
			sdk.await(t, "authorize", &authorize)
			au, err := url.Parse(authorize.URL)
			if err != nil {
				t.Fatal(err)
			}
			if q := au.Query(); !strings.HasPrefix(authorize.URL, base+"/oauth/authorize?") || q.Get("client_id") != client.ClientID ||
				q.Get("redirect_uri") != redirect || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" ||
				q.Get("state") == "" || q.Get("resource") != base+"/mcp" {
				t.Fatalf("authorization URL %s", authorize.URL)
			}

			// The person: consent page, Allow, the IdP's login, back to the
			// application.
			ctx := testkit.Browser(t)
			p := testkit.Browse(t, ctx, chromedp.Navigate(authorize.URL), testkit.WaitText("h1", "Allow access to ClickHouse?"))
			want := []string{clientName + " asks to query ClickHouse as you.", "Sends you back to", redirect,
				"The ClickHouse tools at " + base + "/mcp"}
			if tc.cimd {
				want = append(want, clientName+" — identified by "+docURL)
			} else {
				want = append(want, clientName+" — registered itself; its name is not verified")
			}
			for _, w := range want {
				if !strings.Contains(p.Text, w) {
					t.Errorf("the consent page lacks %q; it shows %s", w, p)
				}
			}
			if p.Title != "Allow access to ClickHouse? · clickgate" {
				t.Errorf("consent page title %q", p.Title)
			}
			p = testkit.Browse(t, ctx, chromedp.Click(chromedp.CSS(`button[value="allow"]`)), testkit.SignIn(tc.user, tc.password),
				testkit.WaitText("main", "Signed in. You can close this tab."))
			if !strings.HasPrefix(p.URL, redirect+"?") {
				t.Fatalf("after signing in the browser shows %s, want the client's %s", p, redirect)
			}
			var cb struct {
				StateOK bool   `json:"stateOK"`
				IssOK   bool   `json:"issOK"`
				Iss     string `json:"iss"`
				Error   string `json:"error"`
			}
			sdk.await(t, "callback", &cb)
			if !cb.StateOK || !cb.IssOK || cb.Error != "" {
				t.Fatalf("the authorization response: %+v (want the client's state and iss %s)", cb, base)
			}
			if tc.cimd && docs.hits.Load() == 0 {
				t.Error("clickgate never fetched the client metadata document")
			}

			// The first call runs as the person's ClickHouse account.
			var first struct {
				Result toolCall `json:"result"`
				Tokens []saved  `json:"tokens"`
			}
			sdk.await(t, "firstCall", &first)
			if got := first.Result.rows(); got != "[["+tc.chUser+"]]" {
				t.Fatalf("%s's query ran as %s (want %s): %+v", tc.user, got, tc.chUser, first.Result)
			}
			if len(first.Tokens) == 0 {
				t.Fatal("the SDK saved no tokens")
			}
			before := first.Tokens[len(first.Tokens)-1]
			if before.RefreshToken == "" || before.TokenType != "Bearer" || before.ExpiresIn != 5 || before.Issuer != base {
				t.Fatalf("tokens %+v: want a Bearer token for 5 s with a refresh token, issuer %s", before, base)
			}
			c := testkit.UnverifiedClaims(t, before.AccessToken)
			checkClaims(t, c, map[string]any{
				"iss": base, "aud": []any{base + "/mcp"}, "client_id": client.ClientID, "username": tc.email,
				"email": tc.email, "groups": toAny(tc.groups), "roles": toAny(tc.roles),
			})
			exp := time.Unix(int64(c["exp"].(float64)), 0)
			if ttl := exp.Sub(time.Unix(int64(c["iat"].(float64)), 0)); ttl != 5*time.Second {
				t.Errorf("access token lifetime %s, want access_token_ttl 5s", ttl)
			}

			// After its expiry (and a margin) the access token is refused,
			// with the challenge MCP clients rely on.
			time.Sleep(time.Until(exp.Add(2 * time.Second)))
			status, challenge := mcpStatus(t, http.DefaultClient, base+"/mcp", before.AccessToken)
			t.Run("ExpiredTokenChallenge", func(t *testing.T) {
				switch {
				case status != http.StatusUnauthorized:
					t.Errorf("the access token (access_token_ttl 5s, exp %s) is still accepted at /mcp 2s after its exp: HTTP %d",
						exp.Format(time.TimeOnly), status)
				case !strings.Contains(challenge, `error="invalid_token"`) || !strings.Contains(challenge, `resource_metadata="`+base+`/.well-known/oauth-protected-resource/mcp"`):
					t.Errorf("/mcp refuses the expired access token with 401 but WWW-Authenticate %q; "+
						`the MCP authorization spec requires a Bearer challenge with resource_metadata (and error="invalid_token", RFC 6750)`, challenge)
				}
			})
			if status != http.StatusUnauthorized {
				waitRefused(t, base+"/mcp", before.AccessToken, exp)
			}
			// ...and the SDK, answered 401, refreshes and calls again.
			sdk.send(t, "the access token has expired")
			var second struct {
				Result toolCall  `json:"result"`
				Tokens []saved   `json:"tokens"`
				HTTP   []httpLog `json:"http"`
			}
			sdk.await(t, "secondCall", &second)
			if got := second.Result.rows(); got != "[["+tc.chUser+"]]" {
				t.Fatalf("after the refresh, %s's query ran as %s (want %s): %+v", tc.user, got, tc.chUser, second.Result)
			}
			after := second.Tokens[len(second.Tokens)-1]
			if len(second.Tokens) != len(first.Tokens)+1 || after.AccessToken == before.AccessToken ||
				after.RefreshToken == "" || after.RefreshToken == before.RefreshToken || after.ExpiresIn != 5 {
				t.Fatalf("after expiry the SDK saved %d tokens (had %d); want one new access token and a rotated refresh token: before %+v, after %+v",
					len(second.Tokens), len(first.Tokens), before, after)
			}
			checkClaims(t, testkit.UnverifiedClaims(t, after.AccessToken), map[string]any{"username": tc.email, "client_id": client.ClientID, "roles": toAny(tc.roles)})
			checkRefreshExchange(t, second.HTTP)
			sdk.wait(t)

			// The rotated-away refresh token, replayed, is refused and
			// revokes the sign-in: the newest refresh token fails too.
			for _, step := range []struct {
				what, token, reason string
			}{
				{"the old refresh token, replayed", before.RefreshToken, "used before"},
				{"the newest refresh token, after the replay", after.RefreshToken, "revoked"},
			} {
				a := postToken(t, http.DefaultClient, base+"/oauth/token", url.Values{
					"grant_type": {"refresh_token"}, "refresh_token": {step.token}, "client_id": {client.ClientID}, "resource": {base + "/mcp"},
				})
				if a.status != http.StatusBadRequest || a.Error != "invalid_grant" || !strings.Contains(a.ErrorDescription, step.reason) || a.AccessToken != "" {
					t.Errorf("%s: %s; want 400 invalid_grant (%s)", step.what, a, step.reason)
				}
			}
			// The warning may be written a moment after the answer.
			line := `refresh token replayed; the sign-in is revoked" client_id=` + client.ClientID + " user=" + tc.email
			for deadline := time.Now().Add(5 * time.Second); !strings.Contains(cg.logs.String(), line); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Errorf("clickgate's log lacks %q", line)
					break
				}
			}
		})
	}
}

// waitRefused polls /mcp with token until clickgate answers 401, at most
// a minute after exp.
func waitRefused(t *testing.T, mcpURL, token string, exp time.Time) {
	t.Helper()
	for {
		status, _ := mcpStatus(t, http.DefaultClient, mcpURL, token)
		if status == http.StatusUnauthorized {
			return
		}
		if time.Since(exp) > time.Minute {
			t.Fatalf("an access token that expired at %s is still accepted (HTTP %d) a minute later", exp.Format(time.TimeOnly), status)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkRefreshExchange checks the SDK's HTTP exchanges during the call
// after expiry: 401 at /mcp, one refresh_token grant, the call again.
func checkRefreshExchange(t *testing.T, log []httpLog) {
	t.Helper()
	var refreshes, otherGrants, registrations int
	for _, h := range log {
		switch {
		case h.Path == "/oauth/token" && h.GrantType == "refresh_token" && h.Status == http.StatusOK:
			refreshes++
		case h.Path == "/oauth/token":
			otherGrants++
		case h.Path == "/oauth/register":
			registrations++
		}
	}
	is := func(h httpLog, method, path string, status int) bool {
		return h.Method == method && h.Path == path && h.Status == status
	}
	n := len(log)
	if n < 3 || !is(log[0], "POST", "/mcp", http.StatusUnauthorized) || !is(log[n-1], "POST", "/mcp", http.StatusOK) ||
		refreshes != 1 || otherGrants != 0 || registrations != 0 {
		t.Errorf("the SDK's requests for the call after expiry: %+v; want POST /mcp 401, discovery, one refresh_token grant, POST /mcp 200", log)
	}
}

func checkClaims(t *testing.T, got map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if fmt.Sprint(got[k]) != fmt.Sprint(v) {
			t.Errorf("access token claim %s = %v, want %v (claims %v)", k, got[k], v, got)
		}
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// documents serves Client ID Metadata Documents by path.
type documents struct {
	mu     sync.Mutex
	byPath map[string][]byte
	hits   atomic.Int64
}

func (d *documents) set(t *testing.T, docURL string, doc map[string]any) {
	t.Helper()
	u, _ := url.Parse(docURL)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.byPath[u.Path] = b
}

func (d *documents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	b, ok := d.byPath[r.URL.Path]
	d.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	d.hits.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// What the script reports.
type (
	toolCall struct {
		IsError    bool           `json:"isError"`
		Text       string         `json:"text"`
		Structured map[string]any `json:"structured"`
		Thrown     string         `json:"thrown"`
	}
	saved struct {
		AccessToken  string `json:"accessToken"`
		RefreshToken string `json:"refreshToken"`
		ExpiresIn    int    `json:"expiresIn"`
		TokenType    string `json:"tokenType"`
		Issuer       string `json:"issuer"`
	}
	httpLog struct {
		Method    string `json:"method"`
		Path      string `json:"path"`
		GrantType string `json:"grantType,omitempty"`
		Status    int    `json:"status"`
		// WWWAuthenticate is the challenge of a 401.
		WWWAuthenticate string `json:"wwwAuthenticate,omitempty"`
	}
)

// rows is a run_query result's rows, printed.
func (c toolCall) rows() string {
	if c.Structured == nil {
		return fmt.Sprintf("(no result: %s%s)", c.Thrown, c.Text)
	}
	return fmt.Sprint(c.Structured["rows"])
}

// sdkScript is ts-client.mjs running under Node.
type sdkScript struct {
	stdin   io.WriteCloser
	stderr  *testkit.SyncBuffer
	changed chan struct{} // a line arrived (capacity 1)
	done    chan struct{} // closed when the process has exited
	err     error         // its exit status, once done

	mu    sync.Mutex
	lines []string // stdout
	next  int      // the first line await has not looked at
}

// startScript runs the script with input as its first line of stdin; it
// is killed when the test ends.
func startScript(t *testing.T, node, script string, input map[string]any) *sdkScript {
	t.Helper()
	cmd := exec.Command(node, script)
	cmd.Dir = t.TempDir()
	cmd.Env = testkit.NodeEnv(node, cmd.Dir)
	s := &sdkScript{stderr: &testkit.SyncBuffer{}, changed: make(chan struct{}, 1), done: make(chan struct{})}
	cmd.Stderr = s.stderr
	var err error
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			s.mu.Unlock()
			select {
			case s.changed <- struct{}{}:
			default:
			}
		}
		s.err = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			s.mu.Lock()
			t.Logf("ts-client.mjs stdout:\n%s\nstderr:\n%s", strings.Join(s.lines, "\n"), s.stderr)
			s.mu.Unlock()
		}
	})
	b, _ := json.Marshal(input)
	s.send(t, string(b))
	return s
}

func (s *sdkScript) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(s.stdin, line+"\n"); err != nil {
		t.Fatalf("writing to ts-client.mjs: %v", err)
	}
}

// nextLine returns the first line await has not looked at yet, if any.
func (s *sdkScript) nextLine() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == len(s.lines) {
		return "", false
	}
	s.next++
	return s.lines[s.next-1], true
}

// await waits for the event named name and decodes it into v; events
// before it are skipped.
func (s *sdkScript) await(t *testing.T, name string, v any) {
	t.Helper()
	timeout := time.After(90 * time.Second)
	for {
		exited := false
		select {
		case <-s.done:
			exited = true
		default:
		}
		for l, ok := s.nextLine(); ok; l, ok = s.nextLine() {
			var e struct {
				Event   string `json:"event"`
				Message string `json:"message"`
			}
			if json.Unmarshal([]byte(l), &e) != nil {
				continue
			}
			switch e.Event {
			case name:
				if err := json.Unmarshal([]byte(l), v); err != nil {
					t.Fatalf("event %s: %v: %s", name, err, l)
				}
				return
			case "error":
				t.Fatalf("ts-client.mjs failed waiting for %s: %s", name, e.Message)
			}
		}
		if exited {
			t.Fatalf("ts-client.mjs exited (%v) before %s", s.err, name)
		}
		select {
		case <-s.changed:
		case <-s.done:
		case <-timeout:
			t.Fatalf("ts-client.mjs did not report %s", name)
		}
	}
}

// wait waits for the script to exit and fails the test unless it exits 0.
func (s *sdkScript) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatal("ts-client.mjs did not exit")
	}
	if s.err != nil {
		t.Fatalf("ts-client.mjs: %v", s.err)
	}
}
