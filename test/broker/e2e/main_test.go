// Package e2e tests clickgate's OAuth broker with everything real: 'clickgate
// serve' as its own process (one, or two replicas sharing their keys and
// state), a real ClickHouse (18.16), a real headless Chromium driven by
// chromedp for the person's part, and the official TypeScript MCP SDK
// (@modelcontextprotocol/sdk, from package.json) as the MCP client.
package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.MainWithClickgate(m)) }

// ---------------------------------------------------------------------------
// clickgate serve, as a process.

// process is a running 'clickgate serve'.
type process struct {
	name string // for messages: "clickgate", "replica A", …
	addr string // its listen address, host:port
	logs *testkit.SyncBuffer
}

// brokerYAML is testkit.BrokerConfig in mapped mode, its access tokens
// living ttl, plus more broker settings.
func brokerYAML(listen, base, dir, clickhouseURL, ttl, more string) string {
	return fmt.Sprintf(testkit.BrokerConfig, listen, base, dir, clickhouseURL, testkit.MappedMode) +
		"  access_token_ttl: " + ttl + "\n" + more
}

// startClickgate runs 'clickgate serve --config' with configYAML (written
// to dir) and extra environment, waits until it answers /healthz on addr,
// and stops it (SIGINT) when the test ends, printing its log if the test
// failed.
func startClickgate(t *testing.T, name, addr, dir, configYAML string, env ...string) *process {
	t.Helper()
	cfgPath := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &process{name: name, addr: addr, logs: &testkit.SyncBuffer{}}
	cmd := exec.Command(testkit.Clickgate, "serve", "--config", cfgPath)
	cmd.Env = append(cleanEnv("CLICKGATE_STATE_DIR="+dir, "HOME="+dir), env...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
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
			t.Errorf("%s ignored SIGINT", name)
		}
		if t.Failed() {
			t.Logf("%s (%s) log:\n%s", name, addr, p.logs)
		}
	})
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := client.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come up on %s (last: %v):\n%s", name, addr, err, p.logs)
		}
		select {
		case err := <-exited:
			t.Fatalf("%s exited: %v\n%s", name, err, p.logs)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cleanEnv is the test's environment without clickgate's own variables,
// HOME and SSL_CERT_FILE, plus extra.
func cleanEnv(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "CLICKGATE_") && k != "HOME" && k != "XDG_STATE_HOME" && k != "SSL_CERT_FILE" {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// sealKey is a fresh broker.seal_key.
func sealKey(t *testing.T) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// ---------------------------------------------------------------------------
// OAuth helpers.

// tokenAnswer is the token endpoint's answer, success or error.
type tokenAnswer struct {
	status           int
	AccessToken      string `json:"access_token"`
	RefreshToken     string `json:"refresh_token"`
	ExpiresIn        int    `json:"expires_in"`
	TokenType        string `json:"token_type"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func (a tokenAnswer) String() string {
	if a.Error != "" {
		return fmt.Sprintf("HTTP %d %s: %s", a.status, a.Error, a.ErrorDescription)
	}
	return fmt.Sprintf("HTTP %d token_type=%s expires_in=%d", a.status, a.TokenType, a.ExpiresIn)
}

// postToken posts form to tokenURL with c.
func postToken(t *testing.T, c *http.Client, tokenURL string, form url.Values) tokenAnswer {
	t.Helper()
	resp, err := c.PostForm(tokenURL, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a tokenAnswer
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("token endpoint: HTTP %d, not JSON: %s", resp.StatusCode, body)
	}
	a.status = resp.StatusCode
	return a
}

// mcpStatus sends an MCP ping with a bearer token to mcpURL and returns the
// HTTP status and the WWW-Authenticate challenge.
func mcpStatus(t *testing.T, c *http.Client, mcpURL, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, mcpURL, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}
