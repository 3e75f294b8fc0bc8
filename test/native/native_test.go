// Package native_test runs the native-protocol listener against a real
// ClickHouse 18.16 with real clients: Debian's clickhouse-client (18.16)
// and clickhouse-go v2.
package native_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

const mappedYAML = `  mode: mapped
  accounts:
    - {role: admin, user: ch_admin, password: admin-pw}
    - {role: mcp_reader, user: ch_reader, password: reader-pw}
`

// stack is ClickHouse 18.16 with clickgate's native listener in front.
type stack struct {
	ch   *chtest.Server
	iss  servertest.Issuer
	srv  *server.Server
	addr string // the native listener
	host string
	port string
}

// newStack starts ClickHouse and clickgate with the clickhouse section
// body (mode, accounts, settings …).
func newStack(t *testing.T, opts chtest.Options, clickhouseYAML string, extraYAML ...string) *stack {
	t.Helper()
	return newStackProcessor(t, opts, "", clickhouseYAML, extraYAML...)
}

// newStackProcessor is newStack with extra keys for the jwt processor
// (", leeway: 1ms").
func newStackProcessor(t *testing.T, opts chtest.Options, processorKeys, clickhouseYAML string, extraYAML ...string) *stack {
	t.Helper()
	ch := chtest.Start(t, opts)
	s := &stack{ch: ch, iss: servertest.NewIssuer(t)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	s.host, s.port, _ = net.SplitHostPort(s.addr)
	yaml := fmt.Sprintf(`
server: {listen: %s, native_listen: %s}
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//", common: [mcp_reader]}
clickhouse:
  url: %s
  native_url: tcp://%s
%s%s`, testkit.FreeAddr(t), s.addr, strings.TrimSuffix(s.iss.Processor(), "}")+processorKeys+"}", ch.HTTPURL, ch.TCPAddr, clickhouseYAML, strings.Join(extraYAML, "\n"))
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Native().Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		<-done
		sctx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer c2()
		_ = srv.Close(sctx)
	})
	return s
}

func (s *stack) token(t *testing.T, email string, groups ...string) string {
	return s.iss.Token(t, "clickhouse", email, groups...)
}

// client runs clickhouse-client against the native listener with args;
// it returns stdout and, on failure, stderr as the error.
func (s *stack) client(t *testing.T, stdin io.Reader, args ...string) (string, error) {
	t.Helper()
	return runClient(t, s.host, s.port, stdin, args...)
}

func runClient(t *testing.T, host, port string, stdin io.Reader, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "clickhouse-client", append([]string{"--host", host, "--port", port}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &out, &errb, stdin
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func TestClickHouseClientSignsInAsMappedAccount(t *testing.T) {
	s := newStack(t, chtest.Options{}, mappedYAML)
	alice := s.token(t, "alice@example.com", "ch-analysts")
	bob := s.token(t, "bob@example.com", "ch-admin")
	for _, tc := range []struct{ tok, want string }{{alice, "ch_reader"}, {bob, "ch_admin"}} {
		out, err := s.client(t, nil, "--password", tc.tok, "--query", chtest.CurrentUserSQL())
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(out); got != tc.want {
			t.Fatalf("runs as %q, want %q", got, tc.want)
		}
	}
	rec := httptest.NewRecorder()
	s.srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`clickgate_native_queries_total{outcome="ok"} 2`, `clickgate_auth_attempts_total{interface="native",processor="corp",result="success"}`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
}
