// Package chdbtest runs SQL through the real, current ClickHouse engine from Go
// tests, so that clickgate can prove the SQL it generates (CREATE USER …
// IDENTIFIED WITH http SERVER …, GRANT and REVOKE of roles, EXECUTE AS …) is
// accepted by ClickHouse as it is today, not just by our idea of its grammar.
//
// It is a test helper: only _test.go files may import it. Importing it loads
// chDB (ClickHouse as a library, libchdb.so, ~550 MB, from the npm package
// chdb that scripts/install-npm.sh installs) into the process through
// github.com/chdb-io/chdb-go, which needs no cgo.
//
// What importing it does to a test binary:
//
//   - At start-up (package init, before any test runs) the library is located:
//     CHDB_LIB_PATH if set, else <repo root>/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so
//     (the repo root is the first directory above the test's working directory
//     holding go.mod). If it is missing the binary exits with
//     "libchdb.so not found: run scripts/install-npm.sh (make test does)":
//     chdb-go opens the library in its own init and cannot report a missing one
//     in any gentler way, so every test in a package importing chdbtest needs
//     the library, used or not.
//   - Open starts the engine once per process (chDB allows one connection per
//     process) and hands every caller the same *Engine; its methods are safe
//     for concurrent use (queries run one at a time). The engine is never
//     closed; its scratch directory is removed by the next process that opens
//     an engine.
//   - chDB would replace the Go runtime's SIGSEGV, SIGBUS, SIGFPE, … handlers
//     with ClickHouse's crash handler, which sleeps for minutes and then kills
//     the process: a nil-pointer panic in any test would hang the run. Open
//     turns chDB's handlers off and puts the Go runtime's back.
//
// The engine runs as clickhouse-local does, with no server, no network and an
// in-process catalogue; it parses, formats and runs queries, but it is not a
// stand-in for a server's access control or the HTTP interface.
package chdbtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	chdbpurego "github.com/chdb-io/chdb-go/chdb-purego"
	"github.com/ebitengine/purego"

	"github.com/clickgate/clickgate/internal/chdbtest/internal/preload"
	"github.com/clickgate/clickgate/internal/chsql"
)

// Engine is the process-wide chDB connection. Get it with Open.
type Engine struct {
	mu      sync.Mutex
	conn    chdbpurego.ChdbConn
	version string
	dir     string
	load    time.Duration
}

var (
	once    sync.Once
	engine  *Engine
	openErr error
)

// Open returns the process-wide engine, starting it on first use, and fails
// tb if it cannot be started.
func Open(tb testing.TB) *Engine {
	tb.Helper()
	once.Do(func() { engine, openErr = start() })
	if openErr != nil {
		tb.Fatalf("chdbtest: %v", openErr)
	}
	return engine
}

// LibPath is the libchdb.so the process loaded.
func LibPath() string { return preload.LibPath }

// dirPrefix names each process's scratch directory under os.TempDir().
const dirPrefix = "clickgate-chdbtest-"

func start() (*Engine, error) {
	t0 := time.Now()
	if preload.Err != nil { // not reached: preload exits first
		return nil, preload.Err
	}
	removeStaleDirs()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", dirPrefix, os.Getpid()))
	if err != nil {
		return nil, err
	}
	// An explicit configuration file, because without one chDB reads
	// ./config.xml from the working directory, as clickhouse-local does: a test
	// directory holding a ClickHouse server's configuration would make the
	// engine use that server's data directory.
	config := filepath.Join(dir, "config.xml")
	if err := os.WriteFile(config, []byte("<clickhouse></clickhouse>\n"), 0o600); err != nil {
		return nil, err
	}

	before := preload.Snapshot()
	if err := disableSignalHandlers(); err != nil {
		return nil, err
	}
	conn, err := chdbpurego.NewConnectionFromConnString("file:" + filepath.Join(dir, "db") + "?config-file=" + config)
	// Even with its crash handlers off, chDB 26.7 installs a handler for
	// SIGRTMIN (34) when it connects (without them it would replace SIGSEGV,
	// SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS, SIGTSTP and SIGRTMIN):
	// put back whatever the Go runtime had for every signal that changed.
	if rerr := before.Restore(before.Changed(preload.Snapshot())); rerr != nil && err == nil {
		err = fmt.Errorf("restoring the Go runtime's signal handlers: %w", rerr)
	}
	if err != nil {
		return nil, fmt.Errorf("starting chDB (%s): %w", preload.LibPath, err)
	}
	e := &Engine{conn: conn, dir: dir}
	v, err := e.Exec("SELECT version()", "TSVRaw")
	if err != nil {
		return nil, err
	}
	e.version = strings.TrimSpace(v)
	e.load = time.Since(t0)
	return e, nil
}

// disableSignalHandlers tells chDB not to install ClickHouse's crash handlers.
// chdb-go v1.11.0 does not expose the call, so it is looked up in the library
// chdb-go already loaded (dlopen of the same path returns the same handle).
func disableSignalHandlers() error {
	lib, err := purego.Dlopen(preload.LibPath, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return err
	}
	sym, err := purego.Dlsym(lib, "chdb_set_signal_handlers_enabled")
	if err != nil {
		return fmt.Errorf("%s has no chdb_set_signal_handlers_enabled (chDB before 26.3?): %w", preload.LibPath, err)
	}
	var set func(enabled int32)
	purego.RegisterFunc(&set, sym)
	set(0)
	return nil
}

// removeStaleDirs deletes the scratch directories of processes that are gone.
func removeStaleDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), dirPrefix)
		pid, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '-'), 0)])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(m)
		}
	}
}

// Version is SELECT version(), e.g. "26.7.2.1".
func (e *Engine) Version() string { return e.version }

// LoadTime is how long starting the engine took (connect and first query;
// loading the library itself happens before main and is not included).
func (e *Engine) LoadTime() time.Duration { return e.load }

// Error is a query ClickHouse refused, with ClickHouse's own message.
type Error struct {
	SQL     string // the query as sent
	Message string // ClickHouse's message, e.g. "Code: 62. DB::Exception: Syntax error: …"
	Code    int    // the error code from Message ("Code: 62."), 0 if absent
	Name    string // the error name from Message ("SYNTAX_ERROR"), "" if absent
}

func (e *Error) Error() string {
	q := e.SQL
	if len(q) > 200 {
		q = q[:200] + "…"
	}
	return fmt.Sprintf("ClickHouse refused %q: %s", q, e.Message)
}

func newError(sql, msg string) *Error {
	msg = strings.TrimSpace(msg)
	e := &Error{SQL: sql, Message: msg}
	if rest, ok := strings.CutPrefix(msg, "Code: "); ok {
		if i := strings.IndexByte(rest, '.'); i > 0 {
			e.Code, _ = strconv.Atoi(rest[:i])
		}
	}
	if strings.HasSuffix(msg, ")") {
		if i := strings.LastIndexByte(msg, '('); i >= 0 {
			name := msg[i+1 : len(msg)-1]
			if name != "" && strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789") == "" {
				e.Name = name
			}
		}
	}
	return e
}

// Exec runs one query and returns its output in the given ClickHouse output
// format (TSV, TSVRaw, JSONEachRow, RawBLOB, …). A query ClickHouse refuses
// returns an *Error carrying ClickHouse's message.
func (e *Engine) Exec(sql, format string) (string, error) {
	// The C API takes NUL-terminated strings: a NUL byte would silently cut the
	// query short. (A NUL inside a quoted name or string is written \0.)
	if strings.IndexByte(sql, 0) >= 0 {
		return "", &Error{SQL: sql, Message: "chdbtest: the query contains a NUL byte, which cannot be passed to chDB; write it as \\0 inside quotes"}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	res, err := e.conn.Query(sql, format)
	if err != nil {
		return "", newError(sql, err.Error())
	}
	if res == nil {
		return "", nil
	}
	defer res.Free()
	return res.String(), nil
}

// Query runs sql and returns its TSV output without the final newline; it
// fails tb if ClickHouse refuses the query.
func (e *Engine) Query(tb testing.TB, sql string) string {
	tb.Helper()
	out, err := e.Exec(sql, "TSV")
	if err != nil {
		tb.Fatalf("chdbtest: %v", err)
	}
	return strings.TrimSuffix(out, "\n")
}

// Format is ClickHouse's formatQuery(sql): the statement as ClickHouse writes
// it back after parsing it (keywords in capitals, identifiers re-quoted where
// needed, possibly over several lines). An error means ClickHouse does not
// parse sql; its message says why (e.g. "Syntax error: …").
func (e *Engine) Format(sql string) (string, error) {
	return e.format("formatQuery", sql)
}

// FormatSingleLine is formatQuerySingleLine(sql): as Format, on one line.
func (e *Engine) FormatSingleLine(sql string) (string, error) {
	return e.format("formatQuerySingleLine", sql)
}

func (e *Engine) format(fn, sql string) (string, error) {
	out, err := e.Exec("SELECT "+fn+"("+chsql.Literal(sql)+")", "RawBLOB")
	if err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.SQL = sql // report the statement under test, not the wrapper
		}
		return "", err
	}
	return out, nil
}

// ParseAST is the output of EXPLAIN AST sql: ClickHouse's parse tree, one node
// a line, without the final newline. It also fails for statements that parse
// but that EXPLAIN does not accept.
func (e *Engine) ParseAST(sql string) (string, error) {
	out, err := e.Exec("EXPLAIN AST "+sql, "TSVRaw")
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(out, "\n"), nil
}

// Identifier returns the name ClickHouse reads from ident, an identifier as
// written in SQL (bare, `back-quoted` or "double-quoted", with escapes): the
// exact bytes of the column name that SELECT 1 AS ident yields. Use it to
// check that a quoting function names what it was given, and that a name in
// Format's output is the same name as in its input.
func (e *Engine) Identifier(ident string) (string, error) {
	out, err := e.Exec("SELECT 1 AS "+ident, "RowBinaryWithNames")
	if err != nil {
		return "", err
	}
	// RowBinaryWithNames starts with the number of columns and then each
	// name, all lengths as unsigned LEB128.
	b := []byte(out)
	cols, n := binary.Uvarint(b)
	if n <= 0 || cols != 1 {
		return "", fmt.Errorf("chdbtest: SELECT 1 AS %s is not one column (RowBinaryWithNames %q)", ident, out)
	}
	b = b[n:]
	size, n := binary.Uvarint(b)
	if n <= 0 || size > uint64(len(b)-n) {
		return "", fmt.Errorf("chdbtest: cannot read the column name of SELECT 1 AS %s from %q", ident, out)
	}
	return string(b[n : n+int(size)]), nil
}

// HostileNames are user, role and database names a token could carry, for
// tests of the SQL that quotes them: quotes, backticks, backslashes,
// control characters, unicode, very long. All are valid UTF-8 and at most
// chsql.MaxIdentifierBytes long, so chsql quotes every one.
var HostileNames = []string{
	"alice@example.com",
	"o'brien",
	"back`tick",
	`back\slash`,
	`trailing\`,
	`\`,
	"`",
	"new\nline; DROP USER admin",
	"tab\tand\rcr",
	"nul\x00byte",
	"bell\x07",
	"ünïcødé-用户-👩‍💻",
	"ünï€ødé 😀 名前",
	"x y.z@corp",
	"` OR 1=1 --",
	"' OR 1=1 --",
	"`; DROP USER admin; --",
	"'; GRANT ALL ON *.* TO `eve`; --",
	"`'\\\n" + "ü😀",
	strings.Repeat("x", 1024),
	strings.Repeat("`\\'", 340),
	strings.Repeat("long`'\\", 500),
}
