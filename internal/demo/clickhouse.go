package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/clickgate/clickgate/internal/chproc"
)

// DefaultBinary is where Debian's package installs the server.
const DefaultBinary = chproc.DefaultBinary

// ErrNoServer means no clickhouse-server binary was found.
var ErrNoServer = errors.New(`clickhouse-server is not installed. Either install Debian's package:
    sudo scripts/install-clickhouse.sh          (from a clickgate checkout; 'make demo' runs it)
    sudo apt-get install -y clickhouse-server   (then run the demo again)
or point the demo at a ClickHouse you have:
    CLICKHOUSE_URL=http://127.0.0.1:8123 CLICKHOUSE_USER=default CLICKHOUSE_PASSWORD=… clickgate demo`)

// FindServer returns the path of clickhouse-server: DefaultBinary, else
// the one on PATH.
func FindServer() (string, error) {
	if p := chproc.FindServer(); p != "" {
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

	proc *chproc.Process
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
	p, err := chproc.Start(ctx, chproc.Config{
		Name:   "clickhouse-server",
		Binary: bin,
		Dir:    dir,
		Configure: func(ports chproc.Ports) error {
			cfg := strings.NewReplacer(
				"{{DIR}}", xmlText(dir),
				"{{HTTP_PORT}}", strconv.Itoa(ports.HTTP),
				"{{TCP_PORT}}", strconv.Itoa(ports.TCP),
			).Replace(configXML)
			return os.WriteFile(filepath.Join(dir, "config.xml"), []byte(cfg), 0o600)
		},
		Timeout: time.Minute,
		// The data is kept from run to run: the server gets time to
		// finish its writes and exit cleanly. Idle keep-alive
		// connections do not hold it up (keep_alive_timeout is 2 s).
		Grace: 10 * time.Second,
	})
	if ee, ok := errors.AsType[*chproc.ExitError](err); ok &&
		(strings.Contains(ee.Log, "Another server instance") || strings.Contains(ee.Log, "Cannot lock file")) {
		return nil, fmt.Errorf("another clickhouse-server already uses %s (a demo still running, or one left behind: stop it)%s", filepath.Join(dir, "data"), ee.Log)
	}
	if err != nil {
		return nil, err
	}
	s := &Server{URL: p.HTTPURL, Dir: dir, PID: p.PID, proc: p}
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
func (s *Server) Stop() { s.proc.Stop() }

// Exited is closed when the server process has ended.
func (s *Server) Exited() <-chan struct{} { return s.proc.Done() }

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
