// Package audit writes clickgate's audit trail: one event per action
// (sign-ins, gateway queries, MCP tool calls, OAuth broker events). The
// login events are the session log, modelled on ClickHouse's
// system.session_log.
//
// A trail has up to two sinks, opened together by OpenOptions:
//
//   - a JSON-lines file (or standard error), appended synchronously and
//     rotated by size (file.go);
//   - a ClickHouse table, written in batches by a goroutine, with a spool
//     directory on disk for the batches that ClickHouse could not take
//     (table.go, spool.go, schema.go).
//
// Write never blocks on ClickHouse and never fails: what the table cannot
// take now goes to the spool and is replayed later, oldest first. Ready
// tells a caller that must not act unrecorded (Options.Required) whether
// any sink can persist an event. Records never hold a token or a secret.
package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Event types. LoginSuccess and LoginFailure are those of
// system.session_log.
const (
	LoginSuccess = "LoginSuccess"
	LoginFailure = "LoginFailure"
	// Query is a query that ran through the gateway, the native listener
	// or MCP (Outcome says how it ended).
	Query = "Query"
	// QueryRefused is a query that clickgate refused before ClickHouse
	// saw it (policy, limits, an unrecordable trail).
	QueryRefused = "QueryRefused"
	// ToolCall is one MCP tool call.
	ToolCall = "ToolCall"
	// SignIn is a completed sign-in through the OAuth broker.
	SignIn = "SignIn"
	// TokenIssued and TokenRefreshed are broker tokens given to a client.
	TokenIssued    = "TokenIssued"
	TokenRefreshed = "TokenRefreshed"
	// RefreshReplay is a refresh token used twice: replay detected, the
	// token family revoked.
	RefreshReplay = "RefreshReplay"
	// ClientRegistered is an OAuth client registered at the broker.
	ClientRegistered = "ClientRegistered"
)

// Interfaces through which people authenticate.
const (
	InterfaceAuthEndpoint = "auth_endpoint"
	InterfaceWhoami       = "whoami"
	InterfaceGateway      = "gateway"
	InterfaceMCP          = "mcp"
	InterfaceBroker       = "oauth_broker" // upstream sign-ins through the OAuth broker
)

// Record is one audit event. JSON names are the table's column names
// (those of system.session_log / system.query_log where ClickHouse has
// them). It never holds a token or a secret: callers pass SQL already
// redacted and tool arguments without the SQL.
type Record struct {
	Type string `json:"type"`
	// EventID is a random version 4 UUID: the caller's when it is one
	// (NewEventID, to name the event before it ends), else stamped by
	// Write. It plays the part of system.session_log's auth_id for the
	// login events.
	EventID               string   `json:"event_id"`
	EventTimeMicroseconds string   `json:"event_time_microseconds"` // stamped by Write: UTC, RFC 3339, microseconds
	User                  string   `json:"user"`
	Subject               string   `json:"subject,omitempty"`
	Processor             string   `json:"processor,omitempty"`
	Roles                 []string `json:"roles"`
	Account               string   `json:"account,omitempty"` // the ClickHouse account the query ran as
	Mode                  string   `json:"mode,omitempty"`    // upstream mode
	ClientAddress         string   `json:"client_address"`
	ClientPort            int      `json:"client_port"`
	Interface             string   `json:"interface"`
	HTTPUserAgent         string   `json:"http_user_agent"`
	QueryID               string   `json:"query_id,omitempty"`
	SessionID             string   `json:"session_id,omitempty"`
	QueryKind             string   `json:"query_kind,omitempty"` // SELECT, INSERT, …
	Query                 string   `json:"query,omitempty"`      // SQL text, redacted by the caller; clipped
	Tool                  string   `json:"tool,omitempty"`       // MCP tool name
	Arguments             string   `json:"arguments,omitempty"`  // MCP tool arguments (JSON) without the SQL
	Outcome               string   `json:"outcome,omitempty"`    // ok, capped, refused, failed
	DurationMicroseconds  uint64   `json:"query_duration_us,omitempty"`
	HTTPStatus            int      `json:"http_status,omitempty"`
	ExceptionCode         int32    `json:"exception_code,omitempty"`
	FailureReason         string   `json:"failure_reason,omitempty"`
	ReadRows              uint64   `json:"read_rows,omitempty"`
	ReadBytes             uint64   `json:"read_bytes,omitempty"`
	WrittenRows           uint64   `json:"written_rows,omitempty"`
	ResultRows            uint64   `json:"result_rows,omitempty"`
	ClientID              string   `json:"client_id,omitempty"` // OAuth client of broker events
}

// Time returns the event time, the zero time when unset or malformed.
func (r Record) Time() time.Time {
	t, _ := time.Parse(time.RFC3339Nano, r.EventTimeMicroseconds)
	return t
}

// DefaultMaxQueryBytes bounds Record.Query unless Options.MaxQueryBytes
// says otherwise.
const DefaultMaxQueryBytes = 64 << 10

// Options open a whole trail.
type Options struct {
	// File is the JSON-lines file: "" off, "-" standard error, else a
	// file opened for appending with mode 0600.
	File string
	// MaxSize rotates the file by size: before a write would take it past
	// MaxSize bytes it is renamed to File.1 (File.1 to File.2, …), keeping
	// MaxFiles rotated files (5 when 0) and dropping the oldest. 0 means no
	// rotation.
	MaxSize  int64
	MaxFiles int
	// Table, when set, also writes the events to a ClickHouse table.
	Table *TableOptions
	// Required makes Ready report an error when no sink can persist an
	// event, so that callers refuse to act unrecorded; OpenOptions then
	// also refuses a trail without a sink.
	Required bool
	// MaxQueryBytes clips Record.Query; DefaultMaxQueryBytes when 0.
	MaxQueryBytes int
	// Registerer receives the clickgate_audit_* metrics; nil: none.
	Registerer prometheus.Registerer
	// Logger reports sink failures; slog.Default() when nil.
	Logger *slog.Logger
}

// Log is an audit trail. A nil *Log discards everything.
type Log struct {
	mu       sync.Mutex // orders Write: the stamps, the file and the table queue
	file     *fileSink  // nil: no file
	table    *tableSink // nil: no table
	now      func() time.Time
	maxQuery int
	required bool
	m        *metrics
	log      *slog.Logger
}

// Open returns a Log writing to path: "" means off (nil), "-" stderr,
// anything else a file opened for appending with mode 0600. It is
// OpenOptions with only Options.File.
func Open(path string) (*Log, error) {
	return OpenOptions(context.Background(), Options{File: path})
}

// New returns a Log writing JSON lines to w (no table, no rotation).
func New(w io.Writer) *Log {
	return &Log{file: &fileSink{w: w}, now: time.Now, maxQuery: DefaultMaxQueryBytes, m: newMetrics(), log: slog.Default()}
}

// OpenOptions opens the sinks that opts names. With no sink it returns a
// nil *Log (or an error when opts.Required). ctx bounds the first contact
// with ClickHouse (version, CREATE TABLE): a ClickHouse that does not
// answer does not stop the opening (events are spooled until it does), one
// that refuses (credentials, a TTL it cannot keep) does.
func OpenOptions(ctx context.Context, opts Options) (*Log, error) {
	if opts.File == "" && opts.Table == nil {
		if opts.Required {
			return nil, errors.New("audit: required, but neither audit.file nor audit.clickhouse is set")
		}
		return nil, nil
	}
	l := &Log{now: time.Now, maxQuery: opts.MaxQueryBytes, required: opts.Required, m: newMetrics(), log: opts.Logger}
	if l.maxQuery <= 0 {
		l.maxQuery = DefaultMaxQueryBytes
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	if opts.File != "" {
		f, err := openFileSink(opts.File, opts.MaxSize, opts.MaxFiles)
		if err != nil {
			return nil, err
		}
		l.file = f
	}
	if opts.Table != nil {
		t, err := openTableSink(ctx, *opts.Table, l.m, l.log)
		if err != nil {
			if l.file != nil {
				l.file.close()
			}
			return nil, err
		}
		l.table = t
		if l.file != nil && l.file.path != "" && uncleanStart(t.opts.SpoolDir) {
			n, err := t.recoverFrom(l.file.path)
			if err != nil {
				l.log.Error("audit: re-sending the file's last events to the table after an unclean stop", "err", err)
			} else if n > 0 {
				l.log.Warn("audit: the last process did not close the trail cleanly; re-sending the file's last minute of events to the table (the table merges those it has by event id)",
					"events", n, "file", l.file.path)
			}
		}
	}
	if opts.Registerer != nil {
		if err := l.m.register(opts.Registerer); err != nil {
			l.Close()
			return nil, fmt.Errorf("audit: metrics: %w", err)
		}
	}
	return l, nil
}

// Write stamps r with the time and an id (r.EventID when the caller took
// one from NewEventID, else a fresh one), clips what may be long and
// appends it to every sink. It never blocks on ClickHouse and never fails:
// a full disk must not stop authentication.
func (l *Log) Write(r Record) {
	if l == nil {
		return
	}
	id := r.EventID
	if !validUUID(id) {
		id = newUUID()
	}
	r.EventID = id
	// What a client sends is bounded here, for every writer of records.
	r.User, r.HTTPUserAgent = clip(r.User, maxClientText), clip(r.HTTPUserAgent, maxClientText)
	r.Query = clip(r.Query, l.maxQuery)
	if r.Roles == nil {
		r.Roles = []string{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r.EventTimeMicroseconds = l.now().UTC().Format(timeLayout)
	line, err := json.Marshal(r)
	if err != nil { // cannot happen: Record has only strings, numbers and a list
		l.log.Error("audit: encoding an event", "err", err)
		return
	}
	line = append(line, '\n')
	if l.file != nil {
		start := time.Now()
		if err := l.file.write(line); err == nil {
			l.m.written[sinkFile].Add(1)
			l.m.latency.WithLabelValues(sinkFile).Observe(time.Since(start).Seconds())
		}
	}
	if l.table != nil {
		l.table.add(r)
	}
}

// timeLayout is event_time_microseconds in the file: RFC 3339, UTC.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// maxClientText bounds client-sent fields (user, user agent) in a record.
const maxClientText = 256

// clip cuts s to at most max bytes, at a character boundary.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && cut > max-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Reopen closes and reopens the file (after logrotate moved it away, on
// SIGHUP); a Log without a file, or on standard error, has nothing to do.
func (l *Log) Reopen() error {
	if l == nil || l.file == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.file.reopen()
}

// Ready returns nil when an event written now can be persisted by at least
// one sink, and always when the trail is not Required (nothing to refuse
// then). Otherwise the error says why, for a caller to refuse the action
// instead of running it unrecorded.
func (l *Log) Ready() error {
	if l == nil || !l.required {
		return nil
	}
	var reasons []error
	if l.file == nil {
		reasons = append(reasons, errors.New("no audit file"))
	} else {
		l.mu.Lock()
		err := l.file.err
		l.mu.Unlock()
		if err == nil {
			return nil
		}
		reasons = append(reasons, fmt.Errorf("audit file: %w", err))
	}
	if l.table == nil {
		reasons = append(reasons, errors.New("no audit table"))
	} else {
		err := l.table.ready()
		if err == nil {
			return nil
		}
		reasons = append(reasons, fmt.Errorf("audit table: %w", err))
	}
	return fmt.Errorf("the audit trail cannot record anything now, and audit.required is on, so nothing runs: %w", errors.Join(reasons...))
}

// Recorder is what a front (the gateway, MCP) needs to record its events.
type Recorder struct {
	Log  *Log   // nil: no events
	Mode string // the upstream mode, recorded with each event
	// Text is what an event keeps of a statement (audit.query_text): all
	// of it (nil), a redaction, or nothing.
	Text func(sql string) string
	// Verbatim says that statements are kept whole, and with them what
	// quotes them: tool arguments and ClickHouse's error messages.
	Verbatim bool
}

// Statement is what an event keeps of sql.
func (r Recorder) Statement(sql string) string {
	if r.Text == nil {
		return sql
	}
	return r.Text(sql)
}

// Stats are the trail's counters since it was opened (the metrics).
type Stats struct {
	FileWritten  uint64 // events appended to the file
	TableWritten uint64 // events inserted into the table (replays included)
	Spooled      uint64 // events written to the spool
	Replayed     uint64 // spooled events inserted later
	Dropped      uint64 // events lost: the spool was full or unwritable
	SpoolFiles   int    // batches waiting in the spool now
	SpoolBytes   int64
}

// Stats returns the counters.
func (l *Log) Stats() Stats {
	if l == nil {
		return Stats{}
	}
	s := Stats{
		FileWritten:  l.m.written[sinkFile].Load(),
		TableWritten: l.m.written[sinkTable].Load(),
		Spooled:      l.m.spooled.Load(),
		Replayed:     l.m.replayed.Load(),
		Dropped:      l.m.dropped.Load(),
	}
	if l.table != nil {
		s.SpoolFiles, s.SpoolBytes = l.table.spool.size()
	}
	return s
}

// Close flushes the table sink (waiting at most TableOptions.CloseTimeout;
// what is not inserted by then is spooled) and closes the file. Standard
// error stays open. A Write after Close is lost, not a panic.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	var errs []error
	if l.table != nil {
		err := l.table.close()
		if err == nil { // everything is in the table or the spool
			err = markClean(l.table.opts.SpoolDir)
		}
		errs = append(errs, err)
	}
	l.mu.Lock()
	if l.file != nil {
		errs = append(errs, l.file.close())
	}
	l.mu.Unlock()
	l.m.unregister()
	return errors.Join(errs...)
}

// NewEventID returns a fresh event id, for a caller that names an event
// (in a log line, an answer) before it writes it.
func NewEventID() string { return newUUID() }

// validUUID reports whether s is a UUID as newUUID writes them (the
// table's event_id column is a UUID: nothing else may reach it).
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	hex.Encode(out[9:13], b[4:6])
	hex.Encode(out[14:18], b[6:8])
	hex.Encode(out[19:23], b[8:10])
	hex.Encode(out[24:], b[10:16])
	out[8], out[13], out[18], out[23] = '-', '-', '-', '-'
	return string(out[:])
}
