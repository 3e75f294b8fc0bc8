package chtest

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chdb"
	"github.com/clickgate/clickgate/internal/chhttp"
	"github.com/clickgate/clickgate/internal/chproc"
)

// Copies of shared/testing/clickhouse-18.16/{config.xml,users.xml}; embedded
// so that the package works in any checkout.
var (
	//go:embed config.xml
	configTemplate string
	//go:embed users.xml
	defaultUsersXML string
)

// missingBinary is the failure message when no server binary is found.
const missingBinary = "clickhouse-server not found: run scripts/install-clickhouse.sh (make test does)"

// Accounts of the default users.xml.
const (
	ReaderUser     = "ch_reader"
	ReaderPassword = "reader-pw"
	AdminUser      = "ch_admin"
	AdminPassword  = "admin-pw"
)

// KeyedQuota is the name of a built-in unlimited quota that accepts client
// supplied keys (the quota_key URL parameter); give it to a User to use
// quota_key.
const KeyedQuota = "keyed"

const keyedQuotaXML = `<keyed><keyed>1</keyed><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></keyed>`

// User is an account added to the default users.xml.
type User struct {
	Name     string // an XML element name without dots: letters, digits, '_', '-'
	Password string // plain text; may be empty
	Profile  string // "default" (the default) or "readonly", or one of Options.ExtraProfiles
	Quota    string // "default" (the default) or KeyedQuota, or one of Options.ExtraQuotas
	XML      string // optional raw XML added inside the user's element
}

// A Release is a ClickHouse server that Start can run.
type Release int

const (
	// Debian1816 is Debian's clickhouse-server package, ClickHouse 18.16:
	// users.xml accounts, no SQL RBAC, no currentUser().
	Debian1816 Release = iota
	// ChDB267 is ClickHouse 26.7, the engine of the npm package chdb
	// (libchdb.so), run as a server by the chdbserver program: real HTTP
	// and native listeners, users.xml accounts, profiles, quotas, grants
	// and http_authentication; no SQL-driven users (CREATE USER) and no
	// EXECUTE AS. Tests using it are skipped, saying why, when the engine
	// is not installed. Its users.xml must keep the user "default", which
	// starts the listeners.
	ChDB267
)

func (r Release) String() string {
	if r == ChDB267 {
		return "ClickHouse 26.7 (chDB)"
	}
	return "ClickHouse 18.16 (Debian)"
}

// Options change the server that Start runs. The zero value is the shared
// test setup.
type Options struct {
	// Release is the server to run; Debian1816 by default.
	Release Release
	// UsersXML replaces the whole users.xml when not empty. ExtraUsers,
	// ExtraProfiles and ExtraQuotas must then be empty.
	UsersXML string
	// ExtraUsers are added to the default accounts.
	ExtraUsers []User
	// ExtraProfiles and ExtraQuotas are raw XML added inside <profiles> and
	// <quotas> of the default users.xml.
	ExtraProfiles string
	ExtraQuotas   string
	// ExtraConfig is raw XML added at the end of config.xml (inside <yandex>).
	// It can add elements, not change those of the template: for a repeated
	// element ClickHouse uses the first one.
	ExtraConfig string
	// Binary is the server binary; by default chproc.DefaultBinary, else
	// clickhouse-server on PATH.
	Binary string
	// StartTimeout bounds the wait for /ping; 30 s by default.
	StartTimeout time.Duration
	// ProbeUser and ProbePassword are the account Start uses for SELECT
	// version(); by default "default" without password, then each ExtraUser.
	// Set them when UsersXML has no such account.
	ProbeUser     string
	ProbePassword string
}

// Server is a running ClickHouse server.
type Server struct {
	Release  Release
	HTTPURL  string // http://127.0.0.1:PORT
	HTTPAddr string // 127.0.0.1:PORT
	TCPAddr  string // 127.0.0.1:PORT (native protocol)
	Dir      string // private directory: config.xml, users.xml, log/, data/, …
	Version  string // SELECT version(), e.g. "18.16.1"
	PID      int    // process id of the server

	// StartDuration is the time from starting the process to the first
	// answer of GET /ping.
	StartDuration time.Duration

	url    *url.URL // HTTPURL + "/"
	client *http.Client
	proc   *chproc.Process
}

// A user name is an XML element name in users.xml, and ClickHouse reads '.'
// in it as a path separator.
var userNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// Start runs a ClickHouse server for the test and stops it (and removes its
// directory) when the test and its subtests end. It fails the test when the
// server cannot be started.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	var bin, lib string
	switch {
	case opts.Release == ChDB267:
		var err error
		if bin, lib, err = chdbServer(); errors.Is(err, chdb.ErrLibraryNotFound) {
			tb.Skipf("chtest: %s is not installed (%v); make test installs it", opts.Release, err)
		} else if err != nil {
			tb.Fatalf("chtest: %v", err)
		}
	case opts.Binary != "":
		if _, err := os.Stat(opts.Binary); err == nil {
			bin = opts.Binary
		}
	default:
		bin = chproc.FindServer()
	}
	if bin == "" {
		tb.Fatalf(missingBinary)
		return nil
	}
	usersXML, err := buildUsersXML(opts)
	if err != nil {
		tb.Fatalf("chtest: %v", err)
		return nil
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}

	dir, err := os.MkdirTemp("", "chtest-")
	if err != nil {
		tb.Fatalf("chtest: %v", err)
		return nil
	}
	tb.Cleanup(func() {
		if os.Getenv("CHTEST_KEEP") != "" {
			tb.Logf("chtest: keeping %s (CHTEST_KEEP is set)", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})

	p, err := chproc.Start(context.Background(), chproc.Config{
		Name:    opts.Release.String(),
		Binary:  bin,
		ChDBLib: lib,
		Dir:     dir,
		Configure: func(ports chproc.Ports) error {
			return writeConfig(dir, ports, usersXML, opts.ExtraConfig)
		},
		Timeout: timeout,
		// The data is thrown away, and 18.16 waits for its clients'
		// idle keep-alive connections (a clickgate under test holds
		// some) before it exits: a second is enough.
		Grace:    time.Second,
		PickPort: pickPort,
		OnRetry:  func(err error) { tb.Logf("chtest: %v; retrying with other ports", err) },
	})
	if err != nil {
		tb.Fatalf("chtest: %v", err)
		return nil
	}
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Ports.HTTP))
	s := &Server{
		Release:       opts.Release,
		HTTPURL:       p.HTTPURL,
		HTTPAddr:      httpAddr,
		TCPAddr:       net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Ports.TCP)),
		Dir:           dir,
		PID:           p.PID,
		StartDuration: p.StartDuration,
		url:           &url.URL{Scheme: "http", Host: httpAddr, Path: "/"},
		proc:          p,
		client: &http.Client{
			Transport: &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: 5 * time.Second},
		},
	}
	tb.Cleanup(s.Stop)

	var lastErr error
	for _, c := range versionCredentials(opts) {
		v, err := s.QueryErr(c[0], c[1], "SELECT version()")
		if err == nil {
			s.Version = v
			break
		}
		lastErr = err
	}
	if s.Version == "" {
		tb.Fatalf("chtest: SELECT version() failed for every known account (%v); set Options.ProbeUser", lastErr)
	}
	return s
}

func versionCredentials(opts Options) [][2]string {
	var creds [][2]string
	if opts.ProbeUser != "" {
		creds = append(creds, [2]string{opts.ProbeUser, opts.ProbePassword})
	}
	creds = append(creds, [2]string{"default", ""})
	for _, u := range opts.ExtraUsers {
		creds = append(creds, [2]string{u.Name, u.Password})
	}
	return creds
}

func buildUsersXML(opts Options) (string, error) {
	if opts.UsersXML != "" {
		if len(opts.ExtraUsers) > 0 || opts.ExtraProfiles != "" || opts.ExtraQuotas != "" {
			return "", errors.New("Options.UsersXML replaces users.xml: ExtraUsers, ExtraProfiles and ExtraQuotas must be empty")
		}
		return opts.UsersXML, nil
	}
	var users strings.Builder
	for _, u := range opts.ExtraUsers {
		if !userNameRE.MatchString(u.Name) {
			return "", fmt.Errorf("user name %q is not usable in users.xml (an XML element name without dots: letters, digits, '_', '-')", u.Name)
		}
		profile, quota := u.Profile, u.Quota
		if profile == "" {
			profile = "default"
		}
		if quota == "" {
			quota = "default"
		}
		fmt.Fprintf(&users, "    <%s><password>%s</password><networks><ip>127.0.0.1</ip></networks><profile>%s</profile><quota>%s</quota>%s</%s>\n",
			u.Name, xmlText(u.Password), xmlText(profile), xmlText(quota), u.XML, u.Name)
	}
	x := defaultUsersXML
	for _, ins := range []struct{ tag, add string }{
		{"</profiles>", opts.ExtraProfiles},
		{"</users>", users.String()},
		{"</quotas>", keyedQuotaXML + "\n" + opts.ExtraQuotas},
	} {
		if ins.add == "" {
			continue
		}
		i := strings.LastIndex(x, ins.tag)
		if i < 0 {
			return "", fmt.Errorf("embedded users.xml has no %s", ins.tag)
		}
		x = x[:i] + "  " + ins.add + "\n  " + x[i:]
	}
	return x, nil
}

func xmlText(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// writeConfig prepares dir for a start of the server on ports: fresh
// subdirectories (an earlier attempt may have left some), config.xml and
// users.xml.
func writeConfig(dir string, ports chproc.Ports, usersXML, extraConfig string) error {
	for _, sub := range []string{"log", "data", "tmp", "user_files", "format_schemas"} {
		p := filepath.Join(dir, sub)
		if err := os.RemoveAll(p); err != nil {
			return err
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
	}
	config := strings.NewReplacer(
		"DIR", dir,
		"HTTP_PORT", strconv.Itoa(ports.HTTP),
		"TCP_PORT", strconv.Itoa(ports.TCP),
	).Replace(configTemplate)
	// Do not wait for idle keep-alive connections of test clients when
	// stopping (18.16 waits up to 5 s by default); the data is thrown away.
	extraConfig += "\n  <shutdown_wait_unfinished>0</shutdown_wait_unfinished>"
	i := strings.LastIndex(config, "</yandex>")
	if i < 0 {
		return errors.New("embedded config.xml has no </yandex>")
	}
	config = config[:i] + extraConfig + "\n" + config[i:]
	if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(config), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "users.xml"), []byte(usersXML), 0o644)
}

// pickPort is chproc.FreePort; tests replace it to provoke "Address
// already in use".
var pickPort = chproc.FreePort

// Stop stops the server: SIGTERM to its process group, SIGKILL after a
// second (at once for ChDB267). It is registered as a cleanup by Start and
// may be called earlier, e.g. to test what happens when ClickHouse is down.
// It is idempotent.
func (s *Server) Stop() {
	s.client.CloseIdleConnections()
	s.proc.Stop()
}

// Exited reports whether the server process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.proc.Done():
		return true
	default:
		return false
	}
}

// QueryError is a query that ClickHouse answered with a status other than 200.
type QueryError struct {
	Status int    // HTTP status
	Code   int    // ClickHouse error code ("Code: 164"), 0 if the body has none
	Body   string // ClickHouse's error text
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("clickhouse: HTTP %d: %s", e.Status, strings.TrimSpace(e.Body))
}

// Query runs sql as user over HTTP (POST body, Basic auth) and returns the
// result without its final newline. A non-200 answer fails the test with
// ClickHouse's error text.
func (s *Server) Query(tb testing.TB, user, password, sql string) string {
	tb.Helper()
	out, err := s.QueryErr(user, password, sql)
	if err != nil {
		tb.Fatalf("chtest: query %q as %s: %v", sql, user, err)
	}
	return out
}

// QueryErr is Query that returns the failure (a *QueryError when ClickHouse
// answered) instead of failing the test. It may be called from any goroutine.
func (s *Server) QueryErr(user, password, sql string) (string, error) {
	return s.QueryParams(user, password, sql, nil)
}

// QueryParams is QueryErr with extra URL parameters: settings (readonly,
// max_execution_time), session_id, quota_key, query_id, default_format, …
func (s *Server) QueryParams(user, password, sql string, params url.Values) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := &chhttp.Client{URL: s.url, User: user, Password: password, HTTP: s.client, MaxAnswer: 1 << 30}
	out, err := c.Query(ctx, sql, params)
	if ex, ok := err.(*chhttp.Exception); ok {
		return "", &QueryError{Status: ex.Status, Code: ex.Code, Body: ex.Message}
	}
	return strings.TrimSuffix(out, "\n"), err
}

// SelfSQL returns a query that selects columns of system.processes for the
// query itself (for example "user, quota_key, query_id"): the query carries a
// random marker and matches its own text. Each call returns a new marker, so
// concurrent callers never see each other. Works on 18.16 (which has no
// currentUser() or queryID()) and on current ClickHouse.
func SelfSQL(columns string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("SELECT %s FROM system.processes WHERE query LIKE '%%chtest-self-%s%%'", columns, hex.EncodeToString(b[:]))
}

// CurrentUserSQL returns a query whose result is the ClickHouse user that
// executes it: SelfSQL("user").
func CurrentUserSQL() string { return SelfSQL("user") }

// WhoAmI returns the ClickHouse user that executes a query sent with these
// credentials.
func (s *Server) WhoAmI(tb testing.TB, user, password string) string {
	tb.Helper()
	return s.Query(tb, user, password, CurrentUserSQL())
}

// QueryLogConfig turns on system.query_log (flushed every half second)
// for Options.ExtraConfig; both releases read it.
const QueryLogConfig = `<query_log><database>system</database><table>query_log</table><flush_interval_milliseconds>500</flush_interval_milliseconds></query_log>`

var (
	chdbOnce   sync.Once
	chdbBinary string
	chdbLib    string
	chdbErr    error
)

// chdbServer builds the chdbserver program (internal/chproc/chdbserver)
// once per test process (the Go build cache makes it quick) and finds
// libchdb.so for it.
func chdbServer() (bin, lib string, err error) {
	chdbOnce.Do(func() {
		if chdbLib, chdbErr = chdb.LibPath(); chdbErr != nil {
			return
		}
		// One file for every test process: each builds its own and renames
		// it into place, which leaves running copies alone.
		dir := filepath.Join(os.TempDir(), "clickgate-chtest")
		if chdbErr = os.MkdirAll(dir, 0o755); chdbErr != nil {
			return
		}
		tmp, err := os.CreateTemp(dir, "chdbserver-*")
		if err != nil {
			chdbErr = err
			return
		}
		tmp.Close()
		out, err := exec.Command("go", "build", "-o", tmp.Name(), "github.com/clickgate/clickgate/internal/chproc/chdbserver").CombinedOutput()
		if err != nil {
			os.Remove(tmp.Name())
			chdbErr = fmt.Errorf("building chdbserver: %v: %s", err, out)
			return
		}
		chdbBinary = filepath.Join(dir, "chdbserver")
		chdbErr = os.Rename(tmp.Name(), chdbBinary)
	})
	return chdbBinary, chdbLib, chdbErr
}
