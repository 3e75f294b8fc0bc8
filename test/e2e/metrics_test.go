package e2e

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/testkit"
)

// TestServeMetricsListen: with server.metrics_listen, 'clickgate serve'
// serves /metrics there only, and both listeners stop on SIGINT.
func TestServeMetricsListen(t *testing.T) {
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	listen, metricsListen := testkit.FreeAddr(t), testkit.FreeAddr(t)
	base, metricsBase := "http://"+listen, "http://"+metricsListen
	// Registered before startServe, so it runs after serve has stopped.
	t.Cleanup(func() {
		for _, addr := range []string{listen, metricsListen} {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				t.Errorf("%s still accepts connections after clickgate serve stopped", addr)
			}
		}
	})
	logs := startServe(t, writeConfig(t, dir, listen, key, "  metrics_listen: "+metricsListen), base, http.DefaultClient)

	tok := key.Sign(t, testkit.Claims(issuer, "clickhouse", "alice@example.com"))
	if status, body := call(t, http.DefaultClient, "GET", base+"/whoami", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }); status != 200 {
		t.Fatalf("whoami: %d %s", status, body)
	}
	status, body := call(t, http.DefaultClient, "GET", metricsBase+"/metrics", nil)
	if status != 200 || !strings.Contains(body, `clickgate_auth_attempts_total{interface="whoami",processor="corp",result="success"} 1`) {
		t.Fatalf("/metrics on metrics_listen: %d %.400s", status, body)
	}
	status, body = call(t, http.DefaultClient, "GET", base+"/metrics", nil)
	if status != 404 || strings.Contains(body, "clickgate_") || strings.Contains(body, "go_goroutines") {
		t.Fatalf("/metrics on the main listener: %d %.400s", status, body)
	}
	if status, _ := call(t, http.DefaultClient, "GET", metricsBase+"/whoami", nil); status != 404 {
		t.Fatalf("/whoami on the metrics listener: %d", status)
	}
	if !strings.Contains(logs.String(), "metrics listening") || !strings.Contains(logs.String(), metricsListen) {
		t.Errorf("the log does not say where metrics listen:\n%s", logs)
	}
}

// A metrics_listen address that is taken stops serve with a clear error,
// without leaving the main listener open.
func TestServeMetricsListenBusy(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	listen := testkit.FreeAddr(t)
	cfg := writeConfig(t, dir, listen, testkit.NewKey(t, jose.ES256, "k1"), "  metrics_listen: "+busy.Addr().String())
	out, code := clickgate(t, "serve", "--config", cfg)
	if code != 1 || !strings.Contains(out, "server.metrics_listen") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("the main listener was left open: %v", err)
	}
	l.Close()
}

func TestCheckConfigMetricsWarning(t *testing.T) {
	tests := []struct {
		name, listen, extra string
		want                []string // in the output; nil: no metrics warning
	}{
		{"loopback", "127.0.0.1:8443", "", nil},
		{"other loopback address", "127.0.0.2:8443", "", nil},
		{"localhost", "localhost:8443", "", nil},
		{"IPv6 loopback", `"[::1]:8443"`, "", nil},
		{"every address", "0.0.0.0:8443", "", []string{"not a loopback address", "set server.metrics_listen: 127.0.0.1:9464"}},
		{"empty host", `":8443"`, "", []string{`main listener :8443`, "set server.metrics_listen: 127.0.0.1:9464"}},
		{"IPv6 every address", `"[::]:8443"`, "", []string{"not a loopback address", "server.metrics_listen: 127.0.0.1:9464"}},
		{"private address", "10.0.0.5:8443", "", []string{"main listener 10.0.0.5:8443", "server.metrics_listen: 127.0.0.1:9464"}},
		{"host name", "clickgate.internal:8443", "", []string{"not a loopback address"}},
		{"public main, loopback metrics", "0.0.0.0:8443", "  metrics_listen: 127.0.0.1:9464", nil},
		{"public metrics", "127.0.0.1:8443", "  metrics_listen: 0.0.0.0:9464", []string{"server.metrics_listen 0.0.0.0:9464 is not a loopback address", "127.0.0.1:9464"}},
		{"public metrics, empty host", "0.0.0.0:8443", `  metrics_listen: ":9464"`, []string{"server.metrics_listen :9464 is not a loopback address"}},
		{"behind a proxy", "127.0.0.1:8443", "  public_url: https://clickgate.example.com", []string{"public_url https://clickgate.example.com", "server.metrics_listen: 127.0.0.1:9464"}},
		{"behind a proxy, metrics moved", "127.0.0.1:8443", "  public_url: https://clickgate.example.com\n  metrics_listen: 127.0.0.1:9464", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeConfig(t, dir, tc.listen, testkit.NewKey(t, jose.ES256, "k"), tc.extra)
			out, code := clickgate(t, "check-config", "--config", path)
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, out)
			}
			if tc.want == nil {
				if strings.Contains(out, "/metrics is reachable") || strings.Contains(out, "/metrics may be reachable") {
					t.Fatalf("unexpected metrics warning:\n%s", out)
				}
				return
			}
			if !strings.Contains(out, "Warnings:") {
				t.Errorf("no Warnings section:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
