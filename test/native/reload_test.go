package native_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// A reload serves new native connections with the new configuration; an
// idle connection of the old one is closed, and the driver reconnects.
func TestReloadSwapsNativeServer(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	iss := servertest.NewIssuer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	build := func(adminAccount string) *server.Server {
		cfg, err := config.Parse([]byte(fmt.Sprintf(`
server: {listen: %s, native_listen: %s}
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//"}
clickhouse:
  url: %s
  native_url: tcp://%s
  mode: mapped
  accounts: [%s]
`, testkit.FreeAddr(t), l.Addr(), iss.Processor(), ch.HTTPURL, ch.TCPAddr, adminAccount)))
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	live := server.NewLive(build("{role: admin, user: ch_admin, password: admin-pw}"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- live.ServeNative(ctx, l) }()
	defer func() {
		cancel()
		<-done
		_ = live.Current().Close(context.Background())
	}()
	c, err := clickhouse.Open(&clickhouse.Options{Addr: []string{l.Addr().String()},
		Auth: clickhouse.Auth{Password: iss.Token(t, "clickhouse", "bob@example.com", "ch-admin")}, MaxOpenConns: 1, MaxIdleConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	who := func() string {
		var u string
		for range 3 { // a connection the reload closed is retried on a new one
			if err = c.QueryRow(ctx, chtest.CurrentUserSQL()).Scan(&u); err == nil {
				return u
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatal(err)
		return ""
	}
	if got := who(); got != "ch_admin" {
		t.Fatalf("before the reload: %q", got)
	}
	if err := live.Swap(build("{role: admin, user: ch_reader, password: reader-pw}")); err != nil {
		t.Fatal(err)
	}
	if got := who(); got != "ch_reader" {
		t.Fatalf("after the reload: %q, want the new configuration's account", got)
	}
}
