// Package chdb runs ClickHouse inside clickgate's process: chDB, the
// ClickHouse engine as a library (libchdb.so, ClickHouse 26.7, from the npm
// package chdb), serves clickhouse.url chdb://<dir> for local files and
// demos without a server.
//
// The library is loaded with github.com/ebitengine/purego (no cgo) the first
// time Open is called, never before: a clickgate that does not use chdb://
// starts and runs without it. Where it is missing, Open says how to install
// it. It is found through CHDB_LIB_PATH, else in
// node_modules/@chdb/lib-<platform>/libchdb.so of the working directory or a
// directory above it (where npm install chdb puts it).
//
// What the engine is like:
//
//   - One per process: chDB allows one connection at a time. Open starts it
//     on a data directory and hands every later caller asking for the same
//     directory the same *Engine; another directory is refused until Close.
//   - One query at a time, in one session: queries wait for each other, and a
//     streamed result holds the engine until it is closed. What a query at
//     readonly 0 changes in the session (SET, USE) stays for the next ones,
//     whoever sends them; Query applies the caller's Settings before each
//     query, so those always hold.
//   - readonly comes from the engine: Settings.Readonly runs the query in a
//     session at that readonly level, which no query can lower (nor, at 1,
//     change any setting; nor, at 2, change readonly). A query that needs a
//     lower level (or, at 1, other settings) gets a fresh session: the engine
//     reconnects (~40 ms). Tables and their data stay; Memory tables lose
//     their rows and temporary tables go.
//   - The engine runs as clickhouse-local does, as one all-powerful user,
//     with the host's files in reach: file() reads any file the process can
//     read (at readonly 0 or 2; readonly 1 forbids table functions).
//     Writing through table functions (INSERT INTO FUNCTION file(…), url(…),
//     s3(…), …) is refused at any level: the engine's user lacks the WRITE
//     grant on sources. readonly would let SELECT … INTO OUTFILE write files
//     (clickhouse-local writes them as clickhouse-client would) and SET or
//     USE change the shared session, so at readonly 1 or 2 the engine also
//     refuses what ClickHouse's parser (chdb_classify_query_n) classes as
//     acting beyond the statement. At readonly 0 all of that runs. Keep
//     chdb:// to trusted, local use.
//   - chDB would replace the Go runtime's handlers for SIGSEGV, SIGBUS,
//     SIGFPE, … with ClickHouse's crash handler, which sleeps for minutes and
//     kills the process instead of letting Go report a panic. Open turns
//     chDB's handlers off and puts back any that still change.
package chdb

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/clickgate/clickgate/internal/chdb/signals"
	"github.com/clickgate/clickgate/internal/chsql"
)

// Engine is the process's embedded ClickHouse. Get it with Open; its
// methods are safe for concurrent use.
type Engine struct {
	lib     *lib
	path    string // the data directory
	config  string // the configuration file
	version string

	// slot admits one query at a time; whoever holds it owns the fields
	// below and the connection.
	slot chan struct{}
	// connPtr is chdb_connect's chdb_connection *; conn is the handle it
	// points at, which the query functions take.
	connPtr, conn unsafe.Pointer
	// readonly is the session's readonly level; -1 when a query that could
	// have changed it (one at readonly 0) ran since it was last known.
	readonly int
	// applied are the Values last set in the session.
	applied map[string]string
}

var (
	engineMu sync.Mutex
	engine   *Engine
)

// Open starts the embedded engine on the data directory dir (created if
// missing), or returns the engine already running on it. chDB runs one
// engine per process: another directory is refused until Close.
func Open(dir string) (*Engine, error) {
	if dir == "" {
		return nil, errors.New("chdb: no data directory given")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("chdb: data directory %q: %w", dir, err)
	}
	engineMu.Lock()
	defer engineMu.Unlock()
	if engine != nil {
		if engine.path != abs {
			return nil, fmt.Errorf("chdb: the engine already runs on %s and chDB runs one engine per process, so %s cannot be opened too", engine.path, abs)
		}
		return engine, nil
	}
	e, err := start(abs)
	if err != nil {
		return nil, err
	}
	engine = e
	return e, nil
}

func start(dir string) (*Engine, error) {
	l, err := load()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("chdb: data directory: %w", err)
	}
	// An explicit configuration, because without one chDB reads
	// ./config.xml from the working directory, as clickhouse-local does: a
	// directory holding a ClickHouse server's configuration would make the
	// engine use that server's data directory. It sits in the data
	// directory, which the engine owns anyway.
	conf := filepath.Join(dir, "clickgate-chdb")
	if err := os.MkdirAll(conf, 0o750); err != nil {
		return nil, fmt.Errorf("chdb: %w", err)
	}
	users := filepath.Join(conf, "users.xml")
	config := filepath.Join(conf, "config.xml")
	if err := os.WriteFile(users, []byte(usersXML), 0o600); err != nil {
		return nil, fmt.Errorf("chdb: %w", err)
	}
	if err := os.WriteFile(config, []byte(strings.Replace(configXML, "USERS", xmlEscape(users), 1)), 0o600); err != nil {
		return nil, fmt.Errorf("chdb: %w", err)
	}
	e := &Engine{lib: l, path: dir, config: config, slot: make(chan struct{}, 1)}
	if err := e.connect(); err != nil {
		return nil, err
	}
	v, err := e.Exec(context.Background(), "SELECT version()", "TSVRaw", Settings{})
	if err != nil {
		return nil, err
	}
	e.version = strings.TrimSpace(string(v))
	return e, nil
}

// configXML points the engine at usersXML (USERS is its path).
const configXML = `<clickhouse>
    <user_directories><users_xml><path>USERS</path></users_xml></user_directories>
</clickhouse>
`

// usersXML is clickhouse-local's default user with every grant but WRITE
// on sources (file, url, s3, …), so that no query writes outside the
// data directory through a table function.
const usersXML = `<clickhouse>
    <profiles><default/></profiles>
    <quotas><default/></quotas>
    <users>
        <default>
            <password/>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
            <grants>
                <query>GRANT ALL ON *.*</query>
                <query>REVOKE WRITE ON *</query>
            </grants>
        </default>
    </users>
</clickhouse>
`

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// connect starts a session; the caller holds the slot (or is start).
func (e *Engine) connect() error {
	args := []string{"clickhouse", "--path=" + e.path, "--config-file=" + e.config}
	cargs := make([][]byte, len(args))
	argv := make([]*byte, len(args)+1) // NULL-terminated, as main's argv
	for i, a := range args {
		cargs[i] = cstr(a)
		argv[i] = &cargs[i][0]
	}
	before := signals.Snapshot()
	e.lib.setSignalHandlers(0)
	connPtr := e.lib.connect(int32(len(args)), &argv[0])
	// Even with its crash handlers off, chDB 26.7 installs a handler for
	// SIGRTMIN when it connects: put back whatever changed.
	rerr := before.Restore(before.Changed(signals.Snapshot()))
	if connPtr == nil || *(*unsafe.Pointer)(connPtr) == nil {
		return fmt.Errorf("chdb: the engine did not start on %s (%s; its reason is on standard error); is the directory writable and not used by another process?", e.path, e.lib.path)
	}
	if rerr != nil {
		return fmt.Errorf("chdb: putting back the Go runtime's signal handlers: %w", rerr)
	}
	e.connPtr, e.conn, e.readonly, e.applied = connPtr, *(*unsafe.Pointer)(connPtr), 0, nil
	return nil
}

// Close stops the engine once the query running (if any) ends; a later
// Open starts one again. Stop it before removing its data directory: its
// background work (merges, …) would crash the process.
func (e *Engine) Close() error {
	engineMu.Lock()
	defer engineMu.Unlock()
	e.slot <- struct{}{}
	defer func() { <-e.slot }()
	if e.conn == nil {
		return nil
	}
	e.lib.closeConn(e.connPtr)
	e.connPtr, e.conn = nil, nil
	if engine == e {
		engine = nil
	}
	return nil
}

// reconnect replaces the session with a fresh one.
func (e *Engine) reconnect() error {
	e.lib.closeConn(e.connPtr)
	e.connPtr, e.conn = nil, nil
	return e.connect()
}

// Path is the data directory.
func (e *Engine) Path() string { return e.path }

// Version is SELECT version(), e.g. "26.7.2.1".
func (e *Engine) Version() string { return e.version }

// LibPath is the libchdb.so the engine runs on.
func (e *Engine) LibPath() string { return e.lib.path }

// Settings are applied to the session before a query.
type Settings struct {
	// Readonly is ClickHouse's readonly setting: 0 allows everything, 1
	// reads only (no table functions, no changing settings), 2 reads and
	// changing settings other than readonly.
	Readonly int
	// Values are other ClickHouse settings (max_execution_time, …), set in
	// the session before the query. They stay set after it.
	Values map[string]string
}

// settingName is what a setting's name looks like.
var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// setSQL is the SET statement for values and then readonly (when not 0),
// or "" when there is nothing to set.
func setSQL(values map[string]string, readonly int) (string, error) {
	names := make([]string, 0, len(values))
	for k := range values {
		if !settingName.MatchString(k) {
			return "", fmt.Errorf("chdb: %q is not a setting name", k)
		}
		if k == "readonly" {
			return "", errors.New("chdb: set readonly with Settings.Readonly")
		}
		names = append(names, k)
	}
	slices.Sort(names)
	parts := make([]string, 0, len(names)+1)
	for _, k := range names {
		// Settings accept their values as strings.
		parts = append(parts, k+" = "+chsql.Literal(values[k]))
	}
	if readonly != 0 {
		parts = append(parts, "readonly = "+strconv.Itoa(readonly))
	}
	if len(parts) == 0 {
		return "", nil
	}
	return "SET " + strings.Join(parts, ", "), nil
}

// Error is a query the engine refused, with ClickHouse's message.
type Error struct {
	Code    int    // from "Code: 62." in Message; 0 if absent
	Message string // e.g. "Code: 62. DB::Exception: Syntax error: …"
}

func (e *Error) Error() string { return "chdb: " + e.Message }

func newError(msg string) *Error {
	msg = strings.TrimSpace(msg)
	e := &Error{Message: msg}
	if rest, ok := strings.CutPrefix(msg, "Code: "); ok {
		if i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); i > 0 {
			e.Code, _ = strconv.Atoi(rest[:i])
		}
	}
	return e
}

// Query runs one statement with settings s and returns its output in
// format (a ClickHouse output format, e.g. TabSeparatedWithNamesAndTypes).
// A statement the engine refuses returns an *Error with ClickHouse's
// message; an error found while the result streams comes from Read.
//
// The engine runs one query at a time: Query waits while another result is
// open (or gives up when ctx ends), so close results promptly. A SELECT
// streams: closing its result early cancels it, and so does ctx between
// blocks. Other statements (DDL, INSERT, EXPLAIN, SHOW, …) run to the end
// first; max_execution_time bounds a statement once it runs.
func (e *Engine) Query(ctx context.Context, sql, format string, s Settings) (io.ReadCloser, error) {
	if s.Readonly < 0 || s.Readonly > 2 {
		return nil, fmt.Errorf("chdb: readonly %d is not 0, 1 or 2", s.Readonly)
	}
	if _, err := setSQL(s.Values, 0); err != nil {
		return nil, err
	}
	select {
	case e.slot <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	r, err := e.query(ctx, sql, format, s)
	if r == nil {
		<-e.slot
	}
	return r, err
}

// Exec runs one statement and returns its whole output.
func (e *Engine) Exec(ctx context.Context, sql, format string, s Settings) ([]byte, error) {
	r, err := e.Query(ctx, sql, format, s)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// query runs with the slot held; a nil result means the slot is free to go.
func (e *Engine) query(ctx context.Context, sql, format string, s Settings) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if e.conn == nil {
		return nil, errors.New("chdb: the engine is closed")
	}
	if s.Readonly != 0 {
		if err := e.checkReadonly(sql, s.Readonly); err != nil {
			return nil, err
		}
	}
	if err := e.prepare(s); err != nil {
		return nil, err
	}
	if s.Readonly == 0 {
		e.readonly = -1 // the statement may SET readonly
	}
	r, err := e.stream(ctx, sql, format)
	var ce *Error
	if errors.As(err, &ce) && ce.Code == codeBadArguments && strings.Contains(ce.Message, "Streaming query is not supported") {
		// chDB streams SELECTs only; it refuses the rest before running
		// them, so running them now runs them once.
		out, err := e.exec(sql, format)
		if err != nil {
			return nil, err
		}
		<-e.slot
		return io.NopCloser(bytes.NewReader(out)), nil
	}
	return r, err
}

// checkReadonly refuses, at readonly 1 or 2, what ClickHouse's parser
// (chdb_classify_query_n) finds acts outside the statement, which readonly
// lets through here: SELECT … INTO OUTFILE, which clickhouse-local writes
// to the host's files, and SET, USE and the like, which would change the
// one session every later query runs in. Writes are readonly's to refuse.
func (e *Engine) checkReadonly(sql string, readonly int) error {
	q := []byte(sql)
	a := queryAnalysis{structSize: uint32(unsafe.Sizeof(queryAnalysis{}))}
	if e.lib.classify(e.conn, ptr(q), uintptr(len(q)), nil, 0, &a) != 0 {
		return &Error{Code: codeReadonly, Message: "chdb: the engine could not analyse the statement"}
	}
	if a.queryClass == classControl {
		return &Error{Code: codeReadonly, Message: fmt.Sprintf("Code: %d. clickgate: at readonly %d the embedded ClickHouse runs no statement that acts beyond itself "+
			"(INTO OUTFILE, SET, USE, SYSTEM, BACKUP, …): here it would write the host's files or change the one session all queries share. (READONLY)", codeReadonly, readonly)}
	}
	return nil
}

// codeReadonly is ClickHouse's READONLY.
const codeReadonly = 164

// codeBadArguments is ClickHouse's BAD_ARGUMENTS.
const codeBadArguments = 36

// prepare brings the session to s: its readonly level, and its values.
func (e *Engine) prepare(s Settings) error {
	if e.readonly < 0 {
		out, err := e.exec("SELECT getSetting('readonly')", "TSVRaw")
		if err != nil {
			return err
		}
		if e.readonly, err = strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
			return fmt.Errorf("chdb: readonly is %q", out)
		}
		if e.readonly != 0 {
			e.applied = map[string]string{"": "set by a query"} // equal to no Values
		}
	}
	// ClickHouse lets no session lower readonly, change it at 2, or change
	// any setting at 1: only a new session can.
	if e.readonly != 0 && (e.readonly != s.Readonly || e.readonly == 1 && !maps.Equal(e.applied, s.Values)) {
		if err := e.reconnect(); err != nil {
			return err
		}
	}
	if e.readonly == 1 {
		return nil // as applied, and no query can change them
	}
	// At 0 the values and then readonly, in one statement; at 2 the values
	// only, which queries may have changed since.
	level := s.Readonly
	if e.readonly == 2 {
		level = 0
	}
	set, _ := setSQL(s.Values, level)
	if set == "" {
		return nil
	}
	if _, err := e.exec(set, "TSV"); err != nil {
		return err
	}
	e.readonly, e.applied = s.Readonly, maps.Clone(s.Values)
	return nil
}

// exec runs a statement to the end (chdb_query_n).
func (e *Engine) exec(sql, format string) ([]byte, error) {
	q, f := []byte(sql), []byte(format)
	res := e.lib.query(e.conn, ptr(q), uintptr(len(q)), ptr(f), uintptr(len(f)))
	if res == nil {
		return nil, &Error{Message: "the engine returned no result"}
	}
	defer e.lib.destroyResult(res)
	if msg := e.lib.resultError(res); msg != "" {
		return nil, newError(msg)
	}
	return e.lib.resultBytes(res), nil
}

// stream starts a streamed query (chdb_stream_query_n).
func (e *Engine) stream(ctx context.Context, sql, format string) (io.ReadCloser, error) {
	q, f := []byte(sql), []byte(format)
	stream := e.lib.streamQuery(e.conn, ptr(q), uintptr(len(q)), ptr(f), uintptr(len(f)))
	if stream == nil {
		return nil, &Error{Message: "the engine returned no result"}
	}
	if msg := e.lib.resultError(stream); msg != "" {
		e.lib.destroyResult(stream)
		return nil, newError(msg)
	}
	return &result{e: e, ctx: ctx, stream: stream}, nil
}

// result is a streamed result; it holds the engine's slot until closed.
type result struct {
	e      *Engine
	ctx    context.Context
	stream unsafe.Pointer // nil once closed
	buf    []byte
	done   bool // the engine sent the last block
	err    error
}

func (r *result) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		switch {
		case r.stream == nil:
			return 0, errors.New("chdb: read from a closed result")
		case r.err != nil:
			return 0, r.err
		case r.done:
			return 0, io.EOF
		}
		if err := r.ctx.Err(); err != nil {
			r.err = err
			return 0, err
		}
		block := r.e.lib.streamFetch(r.e.conn, r.stream)
		if block == nil {
			r.done = true
			continue
		}
		if msg := r.e.lib.resultError(block); msg != "" {
			r.err = newError(msg)
		} else if r.buf = r.e.lib.resultBytes(block); len(r.buf) == 0 {
			r.done = true // the end is an empty block
		}
		r.e.lib.destroyResult(block)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// Close cancels the query if it is still running and frees the engine.
func (r *result) Close() error {
	if r.stream == nil {
		return nil
	}
	r.e.lib.streamCancel(r.e.conn, r.stream)
	r.e.lib.destroyResult(r.stream)
	r.stream = nil
	<-r.e.slot
	return nil
}
