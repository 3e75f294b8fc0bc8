package native_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// http_auth over the native protocol, against ClickHouse 26.7 (chDB's
// server): clickgate signs each person in to ClickHouse as their own user
// with a ticket as password, and ClickHouse asks clickgate's
// /clickhouse/auth about it. Skipped, saying why, where chDB is not
// installed.
func TestHTTPAuthMode(t *testing.T) {
	var handler atomic.Pointer[http.Handler]
	var authCalls atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/clickhouse/auth" {
			authCalls.Add(1)
		}
		if h := handler.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		http.Error(w, "not yet", http.StatusServiceUnavailable)
	}))
	t.Cleanup(front.Close)
	const people = `<dave><http_authentication><server>clickgate</server><scheme>basic</scheme></http_authentication><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></dave>
    <carol><http_authentication><server>clickgate</server><scheme>basic</scheme></http_authentication><networks><ip>127.0.0.1</ip></networks><profile>readonly</profile><quota>default</quota></carol>`
	ch := chtest.Start(t, chtest.Options{Release: chtest.ChDB267, ExtraConfig: fmt.Sprintf(`<http_authentication_servers><clickgate><uri>%s/clickhouse/auth</uri></clickgate></http_authentication_servers>`, front.URL),
		UsersXML: `<?xml version="1.0"?>
<yandex>
  <profiles><default></default><readonly><readonly>1</readonly></readonly></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
    ` + people + `
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`})
	iss := servertest.NewIssuer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
server: {listen: %s, native_listen: %s}
token_processors:
  corp: %s
clickhouse:
  url: %s
  native_url: tcp://%s
  mode: http_auth
  ticket_secret: native-test-ticket-secret-0123456789
`, testkit.FreeAddr(t), l.Addr(), iss.Processor(), ch.HTTPURL, ch.TCPAddr)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	handler.Store(&h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Native().Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done; _ = srv.Close(context.Background()) })

	s := &stack{addr: l.Addr().String()}
	for _, tc := range []struct{ person, readonly string }{{"dave", "0"}, {"carol", "1"}} {
		c := s.goClient(t, iss.Token(t, "clickhouse", tc.person), nil)
		var user, ro string
		// No deadline: clickhouse-go would send it as max_execution_time,
		// which carol's readonly profile refuses.
		err := c.QueryRow(ctx, "SELECT currentUser(), getSetting('readonly')::String").Scan(&user, &ro)
		if err != nil || user != tc.person || ro != tc.readonly {
			t.Fatalf("%s: ClickHouse ran as %q readonly %q: %v", tc.person, user, ro, err)
		}
	}
	if authCalls.Load() == 0 {
		t.Fatal("ClickHouse never asked /clickhouse/auth")
	}
}
