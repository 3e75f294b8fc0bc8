package login

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/testkit"
)

func TestLogin(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	dev := devServer(t, ch)
	zIssuer := zitadelIdP(t)
	zServer := zitadelServer(t, zIssuer)

	t.Run("browser at the development IdP, then whoami, token, query, refresh, cache checks, logout", func(t *testing.T) {
		t.Parallel()
		testBrowserLogin(t, dev)
	})
	t.Run("device flow at the development IdP", func(t *testing.T) {
		t.Parallel()
		testDeviceLogin(t, dev)
	})
	t.Run("browser at another provider with --issuer and --client-id", func(t *testing.T) {
		t.Parallel()
		testOtherProvider(t, zIssuer, zServer, dev)
	})
}

func testBrowserLogin(t *testing.T, base string) {
	dir := t.TempDir()
	issuer := base + "/idp"
	login := start(t, dir, "login", "--no-browser", "--server", base)
	authURL := login.line(t, authURLLine)[1]
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	redirect := q.Get("redirect_uri")
	if !strings.HasPrefix(authURL, issuer+"/authorize?") || q.Get("client_id") != "clickgate-cli" ||
		q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || len(q.Get("state")) < 32 ||
		!strings.HasPrefix(redirect, "http://127.0.0.1:") || !strings.HasSuffix(redirect, "/callback") ||
		!strings.Contains(q.Get("scope"), "offline_access") || !strings.Contains(q.Get("scope"), "groups") {
		t.Fatalf("authorization URL %s", authURL)
	}

	// An answer with a forged state is refused, and the sign-in goes on.
	if status, body := get(t, redirect+"?code=forged&state=forged", ""); status != 400 || !strings.Contains(body, "state does not match") {
		t.Fatalf("forged state: HTTP %d %s", status, body)
	}

	ctx := testkit.Browser(t)
	// A wrong password first: the IdP's page says so, without saying which.
	p := testkit.Browse(t, ctx, chromedp.Navigate(authURL), testkit.SignIn("alice", "not-her-password"),
		testkit.WaitText("#form-error", "Wrong user name or password."))
	if !strings.HasPrefix(p.URL, issuer+"/login") {
		t.Fatalf("after a wrong password the browser shows %s", p)
	}
	p = testkit.Browse(t, ctx, testkit.SignIn("alice", "alice-pw"), testkit.WaitText("main", "You can close this tab"))
	if !strings.HasPrefix(p.URL, redirect+"?") || p.Title != "Signed in · clickgate" {
		t.Fatalf("after signing in the browser shows %s, want the loopback page", p)
	}
	login.wait(t, 10*time.Second)
	if out := login.stdout.String(); out != "Signed in as alice@example.com at "+issuer+".\n" {
		t.Fatalf("login printed %q", out)
	}
	if !strings.Contains(login.stderr.String(), "Ignored an answer on the loopback address whose state does not match") {
		t.Fatalf("login did not report the forged answer:\n%s", login.stderr)
	}
	// The loopback listener is gone.
	if _, err := httpGet(redirect); err == nil {
		t.Fatal("the loopback listener still answers after the sign-in")
	}

	// The cache: one file, 0600, in a 0700 directory.
	file := cacheFile(t, dir)
	if info, _ := os.Stat(file); info.Mode().Perm() != 0o600 {
		t.Fatalf("cache file mode %04o", info.Mode().Perm())
	}
	if info, _ := os.Stat(filepath.Dir(file)); info.Mode().Perm() != 0o700 {
		t.Fatalf("cache directory mode %04o", info.Mode().Perm())
	}
	first, _ := readCache(t, file)
	if first.Issuer != issuer || first.ClientID != "clickgate-cli" || first.AccessToken == "" || first.RefreshToken == "" || time.Until(first.Expiry) < 5*time.Minute {
		t.Fatalf("cache %+v", first)
	}

	// whoami, with the server remembered from login.
	who := mustRun(t, dir, "whoami")
	for _, want := range []string{`You are alice@example.com at ` + regexp.QuoteMeta(base), `\n  user +alice@example.com\n`, `\n  roles +analysts, mcp_reader\n`,
		`\n  groups +ch-analysts, staff\n`, `\n  processor +dev\n`, `\n  token expires +.* \(in \d+m\d+s\)\n`} {
		if !regexp.MustCompile(want).MatchString(who) {
			t.Fatalf("whoami lacks %s:\n%s", want, who)
		}
	}
	if out := mustRun(t, dir, "whoami", "--json"); !strings.Contains(out, `"user":"alice@example.com"`) && !strings.Contains(out, `"user": "alice@example.com"`) {
		t.Fatalf("whoami --json: %s", out)
	}

	// token prints the token and nothing else; the server takes it.
	tok, errOut, code := run(t, dir, "token")
	if code != 0 || !tokenPattern.MatchString(tok) || strings.TrimSpace(tok) != first.AccessToken || errOut != "" {
		t.Fatalf("token: exit %d %q %q", code, tok, errOut)
	}
	if status, body := get(t, base+"/whoami", strings.TrimSpace(tok)); status != 200 || !strings.Contains(body, "alice@example.com") {
		t.Fatalf("the server refused the printed token: %d %s", status, body)
	}

	// query through the gateway: alice runs as ch_reader (mapped mode).
	if out := mustRun(t, dir, "query", currentUser(), "--format", "TSV"); out != "ch_reader\n" {
		t.Fatalf("query as alice: %q", out)
	}
	if out := mustRun(t, dir, "query", "--format", "JSONEachRow", "SELECT number AS n FROM system.numbers LIMIT 3"); out != "{\"n\":\"0\"}\n{\"n\":\"1\"}\n{\"n\":\"2\"}\n" && out != "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n" {
		t.Fatalf("query --format JSONEachRow: %q", out)
	}
	if _, errOut, code := run(t, dir, "query", "SELEC 1"); code != 1 || !strings.Contains(errOut, "Syntax error") {
		t.Fatalf("a bad query: exit %d %s", code, errOut)
	}

	// Refresh: once the access token is near expiry, token refreshes it;
	// three at once refresh once (the refresh token rotates).
	_, raw := readCache(t, file)
	raw["expiry"] = time.Now().Add(30 * time.Second).Format(time.RFC3339)
	writeCache(t, file, raw)
	var wg sync.WaitGroup
	toks := make([]string, 3)
	for i := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i] = mustRun(t, dir, "token")
		}()
	}
	wg.Wait()
	second, _ := readCache(t, file)
	if toks[0] != toks[1] || toks[1] != toks[2] || strings.TrimSpace(toks[0]) != second.AccessToken {
		t.Fatalf("concurrent refreshes printed different tokens:\n%s", strings.Join(toks, ""))
	}
	if second.AccessToken == first.AccessToken || second.RefreshToken == first.RefreshToken || time.Until(second.Expiry) < 5*time.Minute {
		t.Fatal("token did not refresh the access token near its expiry")
	}
	if status, _ := get(t, base+"/whoami", second.AccessToken); status != 200 {
		t.Fatalf("the refreshed token is refused: %d", status)
	}
	if status, e := refreshGrant(t, issuer+"/oauth/token", "clickgate-cli", first.RefreshToken); status != 400 || e != "invalid_grant" {
		t.Fatalf("the first refresh token still works after rotation: %d %s", status, e)
	}
	if out := mustRun(t, dir, "token"); out != toks[0] {
		t.Fatal("token refreshed a token that is still valid")
	}

	// A cache file others may read is refused, with the fix.
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"token"}, {"whoami"}} {
		out, errOut, code := run(t, dir, cmd...)
		if code != 1 || out != "" || !strings.Contains(errOut, "mode 0644") || !strings.Contains(errOut, "chmod 600 "+file) || !strings.Contains(errOut, "refusing") {
			t.Fatalf("%s with a 0644 cache: exit %d %q %s", cmd[0], code, out, errOut)
		}
	}
	os.Chmod(file, 0o600)

	// logout revokes at the IdP and removes the cache.
	out := mustRun(t, dir, "logout")
	if !strings.Contains(out, "Signed out of "+issuer+": tokens revoked") {
		t.Fatalf("logout: %s", out)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("the cache file is still there: %v", err)
	}
	if status, e := refreshGrant(t, issuer+"/oauth/token", "clickgate-cli", second.RefreshToken); status != 400 {
		t.Fatalf("the refresh token works after logout: %d %s", status, e)
	}
	for _, cmd := range [][]string{{"token"}, {"whoami"}, {"query", "SELECT 1"}} {
		if out, errOut, code := run(t, dir, cmd...); code != 1 || out != "" || !strings.Contains(errOut, "not signed in") || !strings.Contains(errOut, "clickgate login") {
			t.Fatalf("%s after logout: exit %d %q %s", cmd[0], code, out, errOut)
		}
	}
	if out := mustRun(t, dir, "logout"); !strings.Contains(out, "Not signed in") {
		t.Fatalf("a second logout: %s", out)
	}
}

func testDeviceLogin(t *testing.T, base string) {
	dir := t.TempDir()
	login := start(t, dir, "login", "--device", "--server", base)
	verification := login.line(t, deviceURL)[1]
	code := login.line(t, deviceCode)[1]
	if verification != base+"/idp/device" {
		t.Fatalf("verification URL %s", verification)
	}

	// Bob types the code on the verification page, signs in and allows.
	ctx := testkit.Browser(t)
	p := testkit.Browse(t, ctx, chromedp.Navigate(verification),
		chromedp.WaitVisible(chromedp.CSS("#user_code")),
		chromedp.SendKeys(chromedp.CSS("#user_code"), code),
		testkit.SignIn("bob", "bob-pw"),
		testkit.WaitText("main", "Allow the device?"))
	if !strings.Contains(p.Text, "clickgate login (command line)") || !strings.Contains(p.Text, "bob") {
		t.Fatalf("confirmation page: %s", p)
	}
	p = testkit.Browse(t, ctx, chromedp.Click(chromedp.CSS(`button[value="allow"]`)), testkit.WaitText("main", "Device signed in"))
	login.wait(t, 20*time.Second)
	if out := login.stdout.String(); out != "Signed in as bob@example.com at "+base+"/idp.\n" {
		t.Fatalf("login --device printed %q", out)
	}

	who := mustRun(t, dir, "whoami")
	if !strings.Contains(who, "You are bob@example.com") || !regexp.MustCompile(`\n  roles +admin, mcp_reader\n`).MatchString(who) {
		t.Fatalf("whoami after the device flow:\n%s", who)
	}
	if out := mustRun(t, dir, "query", currentUser()); out != "ch_admin\n" {
		t.Fatalf("query as bob: %q", out)
	}

	// When the IdP no longer accepts the refresh token (revoked here by an
	// administrator), an expired access token cannot be renewed: token
	// says to sign in again.
	file := cacheFile(t, dir)
	c, raw := readCache(t, file)
	resp, err := http.PostForm(base+"/idp/revoke", url.Values{"token": {c.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {"clickgate-cli"}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoking bob's refresh token: %v %v", err, resp)
	}
	resp.Body.Close()
	raw["expiry"] = time.Now().Add(-time.Second).Format(time.RFC3339)
	writeCache(t, file, raw)
	if out, errOut, code := run(t, dir, "token"); code != 1 || out != "" || !strings.Contains(errOut, "no longer accepts the refresh token") || !strings.Contains(errOut, "run 'clickgate login'") {
		t.Fatalf("token with a revoked refresh token: exit %d %q %s", code, out, errOut)
	}
}

func testOtherProvider(t *testing.T, issuer, server, devServer string) {
	dir := t.TempDir()
	login := start(t, dir, "login", "--no-browser", "--issuer", issuer, "--client-id", zitadelClient, "--server", server)
	authURL := login.line(t, authURLLine)[1]
	if !strings.HasPrefix(authURL, issuer+"/auth?") || !strings.Contains(authURL, "code_challenge_method=S256") {
		t.Fatalf("authorization URL %s", authURL)
	}
	ctx := testkit.Browser(t)
	p := testkit.Browse(t, ctx, chromedp.Navigate(authURL), testkit.SignIn(zitadelUser, zitadelPassword),
		testkit.WaitText("main", "You can close this tab"))
	if !strings.HasPrefix(p.URL, "http://127.0.0.1:") {
		t.Fatalf("after signing in the browser shows %s", p)
	}
	login.wait(t, 10*time.Second)
	if out := login.stdout.String(); out != "Signed in as alice@example.com at "+issuer+".\n" {
		t.Fatalf("login printed %q", out)
	}

	// The clickgate server that trusts this provider knows her.
	if who := mustRun(t, dir, "whoami"); !strings.Contains(who, "You are alice@example.com at "+server) || !regexp.MustCompile(`\n  processor +zitadel\n`).MatchString(who) {
		t.Fatalf("whoami:\n%s", who)
	}
	// One that does not refuses the token, and says what to do.
	if out, errOut, code := run(t, dir, "whoami", "--server", devServer); code != 1 || out != "" ||
		!strings.Contains(errOut, devServer+" refused your token") || !strings.Contains(errOut, "run 'clickgate login'") {
		t.Fatalf("whoami at a server that does not trust the provider: exit %d %q %s", code, out, errOut)
	}

	// The token is the provider's own: its userinfo endpoint accepts it.
	tok := strings.TrimSpace(mustRun(t, dir, "token"))
	if status, body := get(t, issuer+"/userinfo", tok); status != 200 || !strings.Contains(body, "alice@example.com") {
		t.Fatalf("userinfo with the printed token: %d %s", status, body)
	}

	// Refresh at this provider too.
	file := cacheFile(t, dir)
	first, raw := readCache(t, file)
	if first.RefreshToken == "" {
		t.Fatal("no refresh token from the provider")
	}
	raw["expiry"] = time.Now().Add(-time.Minute).Format(time.RFC3339)
	writeCache(t, file, raw)
	tok2 := strings.TrimSpace(mustRun(t, dir, "token"))
	if tok2 == tok {
		t.Fatal("token did not refresh an expired access token")
	}
	if status, _ := get(t, issuer+"/userinfo", tok2); status != 200 {
		t.Fatalf("userinfo with the refreshed token: %d", status)
	}

	// logout revokes at the provider's revocation endpoint.
	second, _ := readCache(t, file)
	if out := mustRun(t, dir, "logout"); !strings.Contains(out, "tokens revoked") {
		t.Fatalf("logout: %s", out)
	}
	if status, _ := refreshGrant(t, issuer+"/oauth/token", zitadelClient, second.RefreshToken); status == 200 {
		t.Fatal("the refresh token works after logout")
	}
}
