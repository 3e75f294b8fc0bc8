package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultBinary is where Debian's package installs the server.
const DefaultBinary = "/usr/sbin/clickhouse-server"

// ErrNoServer means no clickhouse-server binary was found.
var ErrNoServer = errors.New(`clickhouse-server is not installed. Either install Debian's package:
    sudo scripts/install-clickhouse.sh          (from a clickgate checkout; 'make demo' runs it)
    sudo apt-get install -y clickhouse-server   (then run the demo again)
or point the demo at a ClickHouse you have:
    CLICKHOUSE_URL=http://127.0.0.1:8123 CLICKHOUSE_USER=default CLICKHOUSE_PASSWORD=… clickgate demo`)

// FindServer returns the path of clickhouse-server: DefaultBinary, else
// the one on PATH.
func FindServer() (string, error) {
	if fi, err := os.Stat(DefaultBinary); err == nil && !fi.IsDir() {
		return DefaultBinary, nil
	}
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil
	}
	return "", ErrNoServer
}

// Account is a ClickHouse user name and password.
type Account struct {
	User     string
	Password string
}

// Local account names of the demo's own server.
const (
	AnalystUser = "ch_analyst"
	AdminUser   = "ch_admin"
)

// Server is the demo's own clickhouse-server process.
type Server struct {
	URL     string // http://127.0.0.1:PORT
	Dir     string // config.xml, users.xml, data/, log/, …
	PID     int
	Version string

	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	stopOnce sync.Once
}

// StartServer runs bin as its own process (its own process group, so that a
// Ctrl-C in the terminal reaches only clickgate, which then stops it) with
// the data directory dir, on free loopback ports, with two accounts:
// analyst (read-only, database usage only) and admin. Data in dir is
// kept from earlier runs; the configuration is written anew each time.
func StartServer(ctx context.Context, bin, dir string, analyst, admin Account) (*Server, error) {
	for _, sub := range []string{"data", "tmp", "log", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(usersXML(analyst, admin)), 0o600); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 4; attempt++ {
		s, err := startOnce(ctx, bin, dir, admin)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	return nil, lastErr
}

var errAddrInUse = errors.New("address already in use")

func startOnce(ctx context.Context, bin, dir string, admin Account) (*Server, error) {
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	tcpPort, err := freePort()
	for err == nil && tcpPort == httpPort {
		tcpPort, err = freePort()
	}
	if err != nil {
		return nil, err
	}
	cfg := strings.NewReplacer(
		"{{DIR}}", xmlText(dir),
		"{{HTTP_PORT}}", strconv.Itoa(httpPort),
		"{{TCP_PORT}}", strconv.Itoa(tcpPort),
	).Replace(configXML)
	cfgPath := filepath.Join(dir, "config.xml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(filepath.Join(dir, "log", "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	// Not CommandContext: the server is stopped by Stop, gracefully.
	cmd := exec.Command(bin, "--config-file="+cfgPath)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	s := &Server{
		URL:    "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
		Dir:    dir,
		PID:    cmd.Process.Pid,
		cmd:    cmd,
		exited: make(chan struct{}),
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	ping := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.exited:
			tail := s.logTail()
			switch {
			case strings.Contains(tail, "Address already in use"):
				return nil, errAddrInUse
			case strings.Contains(tail, "Another server instance"), strings.Contains(tail, "Cannot lock file"):
				return nil, fmt.Errorf("another clickhouse-server already uses %s (a demo still running, or one left behind: stop it)%s", filepath.Join(dir, "data"), tail)
			}
			return nil, fmt.Errorf("clickhouse-server exited before it was ready (%v)%s", s.waitErr, tail)
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		default:
		}
		if resp, err := ping.Get(s.URL + "/ping"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == "Ok.\n" {
				break
			}
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("clickhouse-server did not answer GET /ping within a minute%s", s.logTail())
		}
		time.Sleep(25 * time.Millisecond)
	}
	v, err := (&Client{URL: s.URL, Account: admin}).Query(ctx, "SELECT version()")
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.Version = v
	return s, nil
}

// Stop ends the server: SIGTERM to its process group, SIGKILL after ten
// seconds. It is idempotent.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		select {
		case <-s.exited:
			return
		default:
		}
		signalGroup(s.cmd, false)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			signalGroup(s.cmd, true)
			<-s.exited
		}
	})
}

// Exited is closed when the server process has ended.
func (s *Server) Exited() <-chan struct{} { return s.exited }

func (s *Server) logTail() string {
	var b strings.Builder
	for _, name := range []string{"err.log", "stdout.log"} {
		p := filepath.Join(s.Dir, "log", name)
		data, err := os.ReadFile(p)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "\n--- end of %s ---\n%s", p, bytes.TrimSpace(data))
	}
	return b.String()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// configXML starts Debian's ClickHouse 18.16 (and later releases) on
// loopback with everything under {{DIR}}.
const configXML = `<?xml version="1.0"?>
<!-- Written by 'clickgate demo' on every start. -->
<yandex>
  <logger><level>warning</level><log>{{DIR}}/log/server.log</log><errorlog>{{DIR}}/log/err.log</errorlog><size>10M</size><count>2</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{{HTTP_PORT}}</http_port>
  <tcp_port>{{TCP_PORT}}</tcp_port>
  <path>{{DIR}}/data/</path>
  <tmp_path>{{DIR}}/tmp/</tmp_path>
  <user_files_path>{{DIR}}/user_files/</user_files_path>
  <format_schema_path>{{DIR}}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>53687091</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <!-- Stopping waits for idle keep-alive connections (clickgate's pool) to time out. -->
  <keep_alive_timeout>2</keep_alive_timeout>
  <shutdown_wait_unfinished>0</shutdown_wait_unfinished>
</yandex>
`

// AnalystReadonly is the analyst profile's readonly level. 1, not 2:
// readonly = 2 still allows table functions such as url(), which would let
// an agent make ClickHouse fetch arbitrary addresses, and an account's
// profile level is the one clickgate cannot tighten. The price: drivers
// that send their own settings need an account at 2.
const AnalystReadonly = 1

// usersXML has the demo's two accounts and nothing else (no passwordless
// default user). ClickHouse 18.16 has no SQL users or grants: the analyst's
// limits are its profile (readonly = AnalystReadonly: no writes) and
// allow_databases (usage only; system stays
// readable, and system.databases and system.tables list only what the
// account may read).
func usersXML(analyst, admin Account) string {
	sum := func(p string) string { h := sha256.Sum256([]byte(p)); return hex.EncodeToString(h[:]) }
	return fmt.Sprintf(`<?xml version="1.0"?>
<!-- Written by 'clickgate demo' on every start. -->
<yandex>
  <profiles>
    <default><max_memory_usage>4000000000</max_memory_usage></default>
    <analyst><readonly>%[6]d</readonly><max_memory_usage>2000000000</max_memory_usage><max_execution_time>60</max_execution_time></analyst>
  </profiles>
  <users>
    <%[1]s>
      <password_sha256_hex>%[2]s</password_sha256_hex>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>analyst</profile><quota>default</quota>
      <allow_databases><database>%[5]s</database></allow_databases>
    </%[1]s>
    <%[3]s>
      <password_sha256_hex>%[4]s</password_sha256_hex>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile><quota>default</quota>
    </%[3]s>
  </users>
  <quotas>
    <default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default>
  </quotas>
</yandex>
`, analyst.User, sum(analyst.Password), admin.User, sum(admin.Password), UsageDB, AnalystReadonly)
}

func xmlText(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
