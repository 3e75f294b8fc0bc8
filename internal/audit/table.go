package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/clickgate/clickgate/internal/chhttp"
)

// TableOptions configure the ClickHouse sink.
type TableOptions struct {
	// URL is ClickHouse's HTTP interface, e.g. http://127.0.0.1:8123.
	URL string
	// User and Password: an account that may CREATE TABLE and INSERT into
	// the table (and SELECT, for the reader).
	User     string
	Password string
	// Database must exist ("default" when empty); Table is created when
	// missing ("clickgate_audit" when empty).
	Database string
	Table    string
	// BatchRows (1000) and FlushInterval (1 s): a batch is inserted when
	// it has BatchRows events or is FlushInterval old.
	BatchRows     int
	FlushInterval time.Duration
	// SpoolDir keeps, on disk, the batches ClickHouse could not take;
	// required. SpoolMaxBytes bounds it (1 GiB): past it, events are
	// dropped and counted.
	SpoolDir      string
	SpoolMaxBytes int64
	// TTL, when not 0, deletes events that much after their time
	// (ClickHouse ≥ 19.6).
	TTL time.Duration
	// HTTPClient sends the requests; http.DefaultClient when nil.
	HTTPClient *http.Client
	// MaxQueueRows bounds the events held in memory for the table; past
	// it they are spilled to the spool. 10 × BatchRows when 0.
	MaxQueueRows int
	// Timeout bounds one statement (30 s); CloseTimeout bounds Close's
	// wait for the last inserts (10 s), after which they are spooled.
	Timeout      time.Duration
	CloseTimeout time.Duration
}

// Defaults of TableOptions.
const (
	DefaultDatabase      = "default"
	DefaultTable         = "clickgate_audit"
	DefaultBatchRows     = 1000
	DefaultFlushInterval = time.Second
	DefaultSpoolMaxBytes = 1 << 30
)

func (o *TableOptions) defaults() error {
	if o.URL == "" {
		return errors.New("audit.clickhouse.url is required")
	}
	if o.SpoolDir == "" {
		return errors.New("audit.clickhouse.spool_dir is required: without it the events ClickHouse cannot take would be lost")
	}
	if o.BatchRows <= 0 {
		o.BatchRows = DefaultBatchRows
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.SpoolMaxBytes <= 0 {
		o.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	if o.MaxQueueRows <= 0 {
		o.MaxQueueRows = 10 * o.BatchRows
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 10 * time.Second
	}
	return nil
}

// target returns the client for o.URL and the quoted name of the table,
// defaulting Database and Table.
func (o *TableOptions) target() (*chhttp.Client, string, error) {
	if o.Database == "" {
		o.Database = DefaultDatabase
	}
	if o.Table == "" {
		o.Table = DefaultTable
	}
	name, err := tableName(o.Database, o.Table)
	if err != nil {
		return nil, "", err
	}
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, "", fmt.Errorf("audit.clickhouse.url %q is not an http(s) URL", o.URL)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return &chhttp.Client{URL: u, User: o.User, Password: o.Password, HTTP: o.HTTPClient}, name, nil
}

// Backoff of the retries while ClickHouse fails: 1 s doubling to 30 s
// (variables so that tests can wait less).
var (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// batch is a run of events inserted together; id is its deduplication
// token and, with stamp, its spool file name.
type batch struct {
	stamp  int64
	id     string
	events []Record
}

// tableSink inserts events into ClickHouse from one goroutine (run):
// Write appends to pending; a full or FlushInterval-old pending becomes a
// batch in queue; run inserts the spool's batches, oldest first, then the
// queue's. A batch ClickHouse does not take goes to the spool, and while
// the spool is not empty every new batch goes there too, so batches reach
// ClickHouse in the order they were written.
type tableSink struct {
	opts   TableOptions
	client *chhttp.Client
	name   string // `database`.`table`
	m      *metrics
	log    *slog.Logger
	spool  *spool

	// Used by run only (and openTableSink before run starts).
	lay        layout
	set        bool // the version is known and the table exists
	backoff    time.Duration
	retryAt    time.Time
	minBackoff time.Duration
	maxBackoff time.Duration

	mu      sync.Mutex
	pending []Record
	queue   []*batch
	queued  int   // events in queue
	failing error // the last insert's failure; nil when it succeeded
	closed  bool

	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
}

func openTableSink(ctx context.Context, o TableOptions, m *metrics, log *slog.Logger) (*tableSink, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	c, name, err := o.target()
	if err != nil {
		return nil, err
	}
	sp, err := openSpool(o.SpoolDir, o.SpoolMaxBytes)
	if err != nil {
		return nil, err
	}
	t := &tableSink{
		opts: o, client: c, name: name, m: m, log: log, spool: sp,
		minBackoff: minBackoff, maxBackoff: maxBackoff,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	// A ClickHouse that answers and refuses (credentials, a TTL it has
	// not) is a configuration error; one that does not answer is retried.
	sctx, cancel := context.WithTimeout(ctx, o.Timeout)
	err = t.setup(sctx)
	cancel()
	var ex *chhttp.Exception
	switch {
	case errors.As(err, &ex) || errors.Is(err, errConfig):
		return nil, fmt.Errorf("audit.clickhouse: %w", err)
	case err != nil:
		t.failed(err)
		log.Warn("audit: ClickHouse is not reachable; spooling events until it is", "err", err)
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.kick <- struct{}{} // replay a spool left by an earlier process now
	go t.run()
	return t, nil
}

// errConfig marks setup errors that retrying cannot fix.
var errConfig = errors.New("configuration")

// setup learns the server's version and creates the table.
func (t *tableSink) setup(ctx context.Context) error {
	// Not Client.Version, which remembers: the server behind the URL may
	// be another one after an outage.
	out, err := t.client.Exec(ctx, "SELECT version()")
	if err != nil {
		return err
	}
	v, err := chhttp.ParseVersion(out)
	if err != nil {
		return err
	}
	lay := layoutFor(v)
	ddl, err := createTable(lay, t.opts.Database, t.opts.Table, t.opts.TTL)
	if err != nil {
		return fmt.Errorf("%w: ClickHouse %s: %w", errConfig, v.Raw, err)
	}
	if _, err := t.client.Exec(ctx, ddl); err != nil {
		return err
	}
	t.lay, t.set = lay, true
	return nil
}

// add queues one event; it never waits for ClickHouse.
func (t *tableSink) add(r Record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		t.m.dropped.Add(1)
		return
	}
	t.pending = append(t.pending, r)
	if len(t.pending) >= t.opts.BatchRows {
		t.sealLocked()
		select {
		case t.kick <- struct{}{}:
		default:
		}
	}
	if t.queued > t.opts.MaxQueueRows {
		// ClickHouse is slow or away: to disk rather than wait or drop.
		t.spillLocked()
	}
}

func (t *tableSink) sealLocked() {
	if len(t.pending) == 0 {
		return
	}
	t.queue = append(t.queue, &batch{stamp: t.spool.stamp(), id: newUUID(), events: t.pending})
	t.queued += len(t.pending)
	t.pending = nil
}

// spillLocked moves every queued batch to the spool, oldest first.
func (t *tableSink) spillLocked() {
	for _, b := range t.queue {
		t.toSpool(b)
	}
	t.queue, t.queued = nil, 0
}

func (t *tableSink) spillAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sealLocked()
	t.spillLocked()
}

func (t *tableSink) toSpool(b *batch) {
	if err := t.spool.put(b); err != nil {
		t.m.dropped.Add(uint64(len(b.events)))
		t.log.Error("audit: events lost: ClickHouse cannot take them and the spool cannot keep them",
			"events", len(b.events), "spool", t.spool.dir, "err", err)
		return
	}
	t.m.spooled.Add(uint64(len(b.events)))
}

func (t *tableSink) run() {
	defer close(t.done)
	tick := time.NewTicker(t.opts.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.kick:
			t.flush(false, false)
		case <-tick.C:
			t.flush(true, false)
		case <-t.stop:
			t.flush(true, true)
			return
		}
	}
}

// flush inserts what it can: the spool first, oldest batch first, then
// the queue (and pending, when seal). While ClickHouse fails (until
// retryAt), everything in memory goes to the spool instead; closing tries
// once more at once and spools what fails.
func (t *tableSink) flush(seal, closing bool) {
	if seal {
		t.mu.Lock()
		t.sealLocked()
		t.mu.Unlock()
	}
	for {
		waiting := !closing && time.Now().Before(t.retryAt)
		if n, _ := t.spool.size(); n > 0 {
			if waiting || t.replayOldest() != nil {
				t.spillAll()
				return
			}
			continue
		}
		// Everything queued goes as one INSERT: after a burst, fewer and
		// larger inserts are what ClickHouse prefers.
		t.mu.Lock()
		bs := t.queue
		t.queue, t.queued = nil, 0
		t.mu.Unlock()
		if len(bs) == 0 {
			return
		}
		var events []Record
		for _, b := range bs {
			events = append(events, b.events...)
		}
		if waiting || t.insert(events, bs[0].id) != nil {
			// Spooled one file per batch, oldest first, before anything
			// queued meanwhile.
			t.mu.Lock()
			for _, b := range bs {
				t.toSpool(b)
			}
			t.sealLocked()
			t.spillLocked()
			t.mu.Unlock()
			return
		}
		t.m.written[sinkTable].Add(uint64(len(events)))
	}
}

// replayFiles bounds the batches one replay INSERT takes.
const replayFiles = 64

// replayOldest inserts the spool's oldest batches (as one INSERT of at
// most MaxQueueRows events, or one batch) and removes them.
func (t *tableSink) replayOldest() error {
	names, err := t.spool.oldest(replayFiles)
	if err != nil || len(names) == 0 {
		return err
	}
	var (
		events []Record
		sizes  []int64
		ids    []string
	)
	for i, name := range names {
		data, err := t.spool.read(name)
		if err != nil {
			t.failed(err)
			return err
		}
		es := t.decode(data)
		if i > 0 && len(events)+len(es) > t.opts.MaxQueueRows {
			names = names[:i]
			break
		}
		events = append(events, es...)
		sizes = append(sizes, int64(len(data)))
		_, id, _ := parseSpoolName(name)
		ids = append(ids, id)
	}
	// The token of one batch is its id; of several, derived from theirs:
	// the same files replayed again give the same token.
	token := ids[0]
	if len(ids) > 1 {
		token = fmt.Sprintf("%s+%d+%s", ids[0], len(ids), ids[len(ids)-1])
	}
	if err := t.insert(events, token); err != nil {
		return err
	}
	for i, name := range names {
		if err := t.spool.remove(name, sizes[i]); err != nil {
			// Inserted but still on disk: it would be replayed again (and
			// deduplicated); say so rather than loop silently.
			t.log.Error("audit: cannot remove a replayed spool file", "file", name, "err", err)
		}
	}
	t.m.written[sinkTable].Add(uint64(len(events)))
	t.m.replayed.Add(uint64(len(events)))
	return nil
}

// decode reads a spool file's events; a line that is not one (a damaged
// file) is skipped and counted as dropped.
func (t *tableSink) decode(data []byte) []Record {
	var events []Record
	for _, line := range bytes.SplitAfter(data, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.m.dropped.Add(1)
			t.log.Error("audit: a spooled line is not an event; skipped", "err", err)
			continue
		}
		events = append(events, r)
	}
	return events
}

// insert sends events as one INSERT; token deduplicates a repeated batch
// on servers that can (≥ 22.2).
func (t *tableSink) insert(events []Record, token string) error {
	ctx, cancel := context.WithTimeout(t.ctx, t.opts.Timeout)
	defer cancel()
	err := t.tryInsert(ctx, events, token)
	if err != nil {
		t.failed(err)
		return err
	}
	t.recovered()
	return nil
}

func (t *tableSink) tryInsert(ctx context.Context, events []Record, token string) error {
	if !t.set {
		if err := t.setup(ctx); err != nil {
			return err
		}
	}
	var body bytes.Buffer
	fmt.Fprintf(&body, "INSERT INTO %s (%s) FORMAT JSONEachRow\n", t.name, strings.Join(columnNames(), ", "))
	for _, r := range events {
		b, err := json.Marshal(toRow(r, t.lay))
		if err != nil {
			return err
		}
		body.Write(b)
		body.WriteByte('\n')
	}
	params := t.client.URL.Query()
	if t.lay.dedupToken && token != "" {
		params.Set("insert_deduplication_token", token)
	}
	start := time.Now()
	_, err := t.client.Query(ctx, body.String(), params)
	if err == nil {
		t.m.latency.WithLabelValues(sinkTable).Observe(time.Since(start).Seconds())
	}
	var ex *chhttp.Exception
	if errors.As(err, &ex) && (ex.Code == 60 || ex.Code == 16) {
		// UNKNOWN_TABLE, NO_SUCH_COLUMN_IN_TABLE: dropped, or a new
		// server behind the URL: create it again before the next try.
		t.set = false
	}
	return err
}

func (t *tableSink) failed(err error) {
	t.backoff = min(max(2*t.backoff, t.minBackoff), t.maxBackoff)
	t.retryAt = time.Now().Add(t.backoff)
	t.mu.Lock()
	t.failing = err
	t.mu.Unlock()
	t.log.Warn("audit: ClickHouse did not take events; spooling them and retrying", "table", t.name, "retry_in", t.backoff, "err", err)
}

func (t *tableSink) recovered() {
	if t.backoff > 0 {
		t.log.Info("audit: ClickHouse takes events again", "table", t.name)
	}
	t.backoff, t.retryAt = 0, time.Time{}
	t.mu.Lock()
	t.failing = nil
	t.mu.Unlock()
}

// ready returns nil when an event can be persisted: ClickHouse takes
// inserts, or the spool can keep it.
func (t *tableSink) ready() error {
	t.mu.Lock()
	failing := t.failing
	t.mu.Unlock()
	if failing == nil {
		return nil
	}
	serr := t.spool.writable()
	if serr == nil {
		return nil
	}
	return fmt.Errorf("ClickHouse: %v; spool: %w", failing, serr)
}

// close flushes: one more try at once, the rest spooled; after
// CloseTimeout the inserts under way are cancelled and spooled too.
func (t *tableSink) close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.mu.Unlock()
	close(t.stop)
	timer := time.NewTimer(t.opts.CloseTimeout)
	defer timer.Stop()
	select {
	case <-t.done:
	case <-timer.C:
		t.log.Warn("audit: ClickHouse is slow; spooling the last events", "table", t.name)
		t.cancel()
		<-t.done
	}
	t.cancel()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pending)+t.queued > 0 { // cannot happen: the closing flush spools what it does not insert
		return fmt.Errorf("audit: %d events neither inserted nor spooled", len(t.pending)+t.queued)
	}
	return nil
}

// row is a Record as a row of the table, for a layout.
type row struct {
	EventID               string   `json:"event_id"`
	EventDate             string   `json:"event_date"`
	EventTime             string   `json:"event_time"`
	EventTimeMicroseconds any      `json:"event_time_microseconds"`
	Type                  string   `json:"type"`
	User                  string   `json:"user"`
	Subject               string   `json:"subject"`
	Processor             string   `json:"processor"`
	Roles                 []string `json:"roles"`
	Account               string   `json:"account"`
	Mode                  string   `json:"mode"`
	Interface             string   `json:"interface"`
	ClientAddress         string   `json:"client_address"`
	ClientPort            uint16   `json:"client_port"`
	HTTPUserAgent         string   `json:"http_user_agent"`
	QueryID               string   `json:"query_id"`
	SessionID             string   `json:"session_id"`
	QueryKind             string   `json:"query_kind"`
	Query                 string   `json:"query"`
	Tool                  string   `json:"tool"`
	Arguments             string   `json:"arguments"`
	Outcome               string   `json:"outcome"`
	DurationMicroseconds  uint64   `json:"query_duration_us"`
	HTTPStatus            uint16   `json:"http_status"`
	ExceptionCode         int32    `json:"exception_code"`
	FailureReason         string   `json:"failure_reason"`
	ReadRows              uint64   `json:"read_rows"`
	ReadBytes             uint64   `json:"read_bytes"`
	WrittenRows           uint64   `json:"written_rows"`
	ResultRows            uint64   `json:"result_rows"`
	ClientID              string   `json:"client_id"`
}

// toRow converts r. Times are written as UTC text into UTC columns (no
// server time zone involved); on the old layout event_time_microseconds is
// a number of microseconds since the epoch.
func toRow(r Record, l layout) row {
	at := r.Time().UTC()
	var micro any = at.Format("2006-01-02 15:04:05.000000")
	if !l.modern {
		micro = uint64(at.UnixMicro())
	}
	roles := r.Roles
	if roles == nil {
		roles = []string{}
	}
	return row{
		EventID: r.EventID, EventDate: at.Format("2006-01-02"), EventTime: at.Format("2006-01-02 15:04:05"),
		EventTimeMicroseconds: micro, Type: r.Type, User: r.User, Subject: r.Subject, Processor: r.Processor,
		Roles: roles, Account: r.Account, Mode: r.Mode, Interface: r.Interface, ClientAddress: r.ClientAddress,
		ClientPort: uint16(r.ClientPort), HTTPUserAgent: r.HTTPUserAgent, QueryID: r.QueryID, SessionID: r.SessionID,
		QueryKind: r.QueryKind, Query: r.Query, Tool: r.Tool, Arguments: r.Arguments, Outcome: r.Outcome,
		DurationMicroseconds: r.DurationMicroseconds, HTTPStatus: uint16(r.HTTPStatus), ExceptionCode: r.ExceptionCode,
		FailureReason: r.FailureReason, ReadRows: r.ReadRows, ReadBytes: r.ReadBytes, WrittenRows: r.WrittenRows,
		ResultRows: r.ResultRows, ClientID: r.ClientID,
	}
}
