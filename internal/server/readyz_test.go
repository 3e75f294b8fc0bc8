package server

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/testkit"
)

// /readyz answers anyone: it says which check failed, never why — an
// address or a network error is a map of the inside — and the log says
// why, once per change rather than at every probe.
func TestReadyzSaysNothingOfTheNetwork(t *testing.T) {
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	// Nothing listens there: a closed port on this machine.
	chAddr := testkit.FreeAddr(t)
	yaml := fmt.Sprintf(`
token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse]}
clickhouse:
  url: http://%s
  mode: mapped
  accounts: [{role: reader, user: r, password: p}]
`, issuer, testkit.WriteJWKS(t, dir, key), chAddr)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	var resp *http.Response
	var body []byte
	for range 3 { // a balancer probes again and again
		var err error
		if resp, err = http.Get(srv.URL + "/readyz"); err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	_, port, _ := strings.Cut(chAddr, ":")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"clickhouse": "unavailable`) {
		t.Fatalf("readyz: %d %s", resp.StatusCode, body)
	}
	for _, leak := range []string{port, "127.0.0.1", "dial", "refused"} {
		if strings.Contains(string(body), leak) {
			t.Errorf("readyz tells %q: %s", leak, body)
		}
	}
	if !strings.Contains(logs.String(), port) || !strings.Contains(logs.String(), "check=clickhouse") {
		t.Errorf("the log does not say why:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "readyz: not ready"); n != 1 {
		t.Errorf("three probes of one outage logged %d times, want once:\n%s", n, logs.String())
	}
}
