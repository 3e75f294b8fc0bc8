// Package login tests clickgate login, token, whoami, query and logout as a
// person uses them: the clickgate binary runs as its own process against a
// real clickgate server (development IdP on, gateway in front of a real
// ClickHouse 18.16), and a real headless Chromium, driven by chromedp,
// signs in on the identity provider's pages. A second, independent OpenID
// provider (zitadel's example OP with its example storage and login page)
// proves that --issuer works with any IdP.
package login

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/testkit"
)

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(testkit.MainWithClickgate(m))
}

// ---------------------------------------------------------------------------
// A clickgate server in this process.

// serve runs a clickgate server with the configuration yaml (%[1]s is its
// listen address, %[2]s its base URL) and returns the base URL.
func serve(t *testing.T, yaml string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	cfg, err := config.Parse([]byte(fmt.Sprintf(yaml, l.Addr().String(), base)))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testkit.SyncBuffer{}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Listener.Close()
	hs.Listener = l
	hs.Start()
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		if t.Failed() {
			t.Logf("clickgate server %s log:\n%s", base, logs)
		}
	})
	return base
}

// devServer is clickgate with its development IdP, trusting it, and the
// gateway in mapped mode in front of ClickHouse: admins run as ch_admin,
// everyone else as ch_reader.
func devServer(t *testing.T, ch *chtest.Server) string {
	t.Helper()
	keys := filepath.Join(t.TempDir(), "dev-idp-keys.json")
	return serve(t, `
server:
  listen: %[1]s
  public_url: %[2]s
token_processors:
  dev:
    type: oidc
    issuer: %[2]s/idp
    audiences: [clickhouse]
    username_claim: email
    required_claims: {email_verified: true}
directory:
  roles:
    mapping: {"ch-admins": ch-admin}
    filter: "^ch-.*$"
    transform: "s/^ch-//"
    common: [mcp_reader]
clickhouse:
  url: `+ch.HTTPURL+`
  mode: mapped
  accounts:
    - {role: admin, user: ch_admin, password: admin-pw}
    - {role: mcp_reader, user: ch_reader, password: reader-pw}
dev_idp:
  enabled: true
  key_file: `+keys+`
  users:
    - {username: alice, password: alice-pw, email: alice@example.com, name: Alice Liddell, groups: [ch-analysts, staff]}
    - {username: bob, password: bob-pw, email: bob@example.com, groups: [ch-admins]}
`)
}

// ---------------------------------------------------------------------------
// The clickgate command.

// env is the environment of a clickgate command with its own
// configuration directory and nothing of the developer's.
func env(configDir string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "CLICKGATE_") || k == "BROWSER" || k == "DISPLAY" || k == "WAYLAND_DISPLAY" {
			continue
		}
		out = append(out, kv)
	}
	return append(out, "CLICKGATE_CONFIG_DIR="+configDir)
}

// run runs clickgate to completion.
func run(t *testing.T, configDir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testkit.Clickgate, args...)
	cmd.Env = env(configDir)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// mustRun runs clickgate and fails the test unless it exits 0.
func mustRun(t *testing.T, configDir string, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, configDir, args...)
	if code != 0 {
		t.Fatalf("clickgate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// proc is a clickgate command running in the background (login).
type proc struct {
	cmd    *exec.Cmd
	stdout *testkit.SyncBuffer
	stderr *testkit.SyncBuffer
	lines  chan string
	done   chan struct{}
	err    error
}

func start(t *testing.T, configDir string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(testkit.Clickgate, args...)
	cmd.Env = env(configDir)
	p := &proc{cmd: cmd, stdout: &testkit.SyncBuffer{}, stderr: &testkit.SyncBuffer{}, lines: make(chan string, 100), done: make(chan struct{})}
	cmd.Stdout = p.stdout
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			p.stderr.Write([]byte(sc.Text() + "\n"))
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// line waits for a line of standard error that matches re and returns its
// submatches.
func (p *proc) line(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l := <-p.lines:
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-p.done:
			t.Fatalf("clickgate exited (%v) before printing %s\nstdout: %s\nstderr: %s", p.err, re, p.stdout, p.stderr)
		case <-timeout:
			t.Fatalf("clickgate did not print %s\nstderr: %s", re, p.stderr)
		}
	}
}

// wait waits for the command to end and fails the test unless it exits 0.
func (p *proc) wait(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("clickgate did not finish within %s\nstdout: %s\nstderr: %s", within, p.stdout, p.stderr)
	}
	if p.err != nil {
		t.Fatalf("clickgate: %v\nstdout: %s\nstderr: %s", p.err, p.stdout, p.stderr)
	}
}

var (
	authURLLine  = regexp.MustCompile(`^\s+(http://\S+)$`)
	deviceURL    = regexp.MustCompile(`^\s+(http://\S+/device)$`)
	deviceCode   = regexp.MustCompile(`^\s+([A-Z]{4}-[A-Z]{4})$`)
	currentUser  = chtest.CurrentUserSQL
	tokenPattern = regexp.MustCompile(`^[A-Za-z0-9_\-.~+/=]+\n$`)
)

// ---------------------------------------------------------------------------
// Cache files.

type cached struct {
	Issuer       string    `json:"issuer"`
	ClientID     string    `json:"client_id"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	Expiry       time.Time `json:"expiry"`
}

// cacheFile is the one token cache file in configDir.
func cacheFile(t *testing.T, configDir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(configDir, "tokens", "*.json"))
	if len(files) != 1 {
		t.Fatalf("token cache files %v, want one", files)
	}
	return files[0]
}

func readCache(t *testing.T, path string) (cached, map[string]any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c cached
	var raw map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &raw)
	return c, raw
}

func writeCache(t *testing.T, path string, raw map[string]any) {
	t.Helper()
	b, _ := json.Marshal(raw)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// HTTP helpers.

func get(t *testing.T, u, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// refreshGrant redeems a refresh token at a token endpoint as a public
// client and returns the HTTP status and the OAuth error, if any.
func refreshGrant(t *testing.T, tokenURL, clientID, refreshToken string) (int, string) {
	t.Helper()
	resp, err := http.PostForm(tokenURL, url.Values{"grant_type": {"refresh_token"}, "client_id": {clientID}, "refresh_token": {refreshToken}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error
}

// httpGet fails when nothing listens at u.
func httpGet(u string) (int, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
