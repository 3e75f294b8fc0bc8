package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/testkit"
)

// TestMetricsListen runs both listeners as 'clickgate serve' does:
// /metrics only on the metrics listener, a local 404 on the main one, and
// both stop together when the context ends.
func TestMetricsListen(t *testing.T) {
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	main, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
server: {listen: %q, metrics_listen: %q}
token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse], username_claim: email}
`, main.Addr(), metrics.Addr(), issuer, testkit.WriteJWKS(t, dir, key))))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 2)
	go func() { served <- s.Serve(ctx, main) }()
	go func() { served <- s.ServeMetrics(ctx, metrics) }()

	mainURL, metricsURL := "http://"+main.Addr().String(), "http://"+metrics.Addr().String()
	tok := key.Sign(t, testkit.Claims(issuer, "clickhouse", "alice@example.com"))
	if status, body := get(t, mainURL+"/whoami", "Bearer "+tok); status != http.StatusOK {
		t.Fatalf("whoami on the main listener: %d %s", status, body)
	}
	tests := []struct {
		name, url string
		status    int
		want      string // in the body
		notWant   string
	}{
		{"metrics on the metrics listener", metricsURL + "/metrics", 200, `clickgate_auth_attempts_total{interface="whoami",processor="corp",result="success"} 1`, ""},
		{"metrics on the main listener", mainURL + "/metrics", 404, "server.metrics_listen", "clickgate_auth_attempts_total"},
		{"metrics with a query on the main listener", mainURL + "/metrics?x=1", 404, "server.metrics_listen", "clickgate_auth_attempts_total"},
		{"the main listener still serves", mainURL + "/healthz", 200, "ok", ""},
		{"nothing else on the metrics listener", metricsURL + "/healthz", 404, "", "ok"},
		{"no whoami on the metrics listener", metricsURL + "/whoami", 404, "", ""},
		{"no gateway on the metrics listener", metricsURL + "/?query=SELECT+1", 404, "", "gateway"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := get(t, tc.url, "")
			if status != tc.status || !strings.Contains(body, tc.want) || (tc.notWant != "" && strings.Contains(body, tc.notWant)) {
				t.Fatalf("%d, want %d with %q and without %q; body:\n%.600s", status, tc.status, tc.want, tc.notWant, body)
			}
		})
	}

	cancel()
	for i := 0; i < 2; i++ {
		select {
		case err := <-served:
			if err != nil {
				t.Fatalf("a listener stopped with %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the listeners did not shut down")
		}
	}
	for _, l := range []net.Listener{main, metrics} {
		if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after shutdown", l.Addr())
		}
	}
	if strings.Contains(logs.String(), tok[strings.LastIndex(tok, ".")+1:]) {
		t.Error("a token reached the server log")
	}
}

// Without server.metrics_listen, /metrics stays on the main handler, and
// MetricsHandler serves the same registry.
func TestMetricsOnMainListener(t *testing.T) {
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse], username_claim: email}
`, issuer, testkit.WriteJWKS(t, dir, key))))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.audit.Close() })
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	tok := key.Sign(t, testkit.Claims(issuer, "clickhouse", "alice@example.com"))
	if status, body := get(t, srv.URL+"/whoami", "Bearer "+tok); status != http.StatusOK {
		t.Fatalf("whoami: %d %s", status, body)
	}
	const want = `clickgate_auth_attempts_total{interface="whoami",processor="corp",result="success"} 1`
	if status, body := get(t, srv.URL+"/metrics", ""); status != 200 || !strings.Contains(body, want) {
		t.Fatalf("/metrics on the main listener: %d %.300s", status, body)
	}
	rec := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
		t.Fatalf("MetricsHandler: %d %.300s", rec.Code, rec.Body.String())
	}
}

func get(t *testing.T, url, authorization string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
