package gateway

import (
	"bytes"
	"net/http"
	"strconv"
	"time"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/chhttp"
	"github.com/clickgate/clickgate/internal/clickhouse"
)

// auditor records the gateway's events: one Query for each request that
// reached ClickHouse, one QueryRefused for each that an authenticated
// caller sent and clickgate refused. Requests refused before anyone was
// authenticated have the session log's LoginFailure, or no event when
// they named no one.
type auditor struct{ audit.Recorder }

// event is one request's audit record while the request is served. The
// methods of a nil *event do nothing, so the gateway calls them whether
// or not the audit is on.
type event struct {
	rec   audit.Record
	start time.Time
	known bool                    // someone was authenticated: the event is recorded
	proxy bool                    // the request went to ClickHouse
	keep  func(sql string) string // what the event keeps of a statement
	// summary and code are ClickHouse's X-ClickHouse-Summary and
	// X-ClickHouse-Exception-Code, when it answered.
	summary, code string
	written       *statusWriter
}

func (a auditor) start(r *http.Request) *event {
	if a.Log == nil {
		return nil
	}
	ev := &event{start: time.Now(), keep: a.Statement, rec: audit.Record{
		Type: audit.QueryRefused, EventID: audit.NewEventID(), Interface: audit.InterfaceGateway,
		Mode: a.Mode, HTTPUserAgent: r.UserAgent(),
	}}
	ev.rec.ClientAddress, ev.rec.ClientPort = authn.SplitAddr(r.RemoteAddr)
	return ev
}

// wantsText reports whether the request's SQL is read for the audit.
func (a auditor) wantsText() bool { return a.Log != nil }

// ready refuses a query that could not be recorded, when that is required.
func (a auditor) ready() error {
	if err := a.Log.Ready(); err != nil {
		return &clickhouse.Error{Status: http.StatusServiceUnavailable, Code: clickhouse.CodeNetworkError, Name: "NETWORK_ERROR",
			Msg: "clickgate: " + err.Error()}
	}
	return nil
}

func (a auditor) finish(ev *event) {
	if !ev.known {
		return
	}
	r := &ev.rec
	r.DurationMicroseconds = uint64(time.Since(ev.start).Microseconds())
	r.HTTPStatus = ev.written.status
	code := ev.code
	if code == "" { // clickgate's own answer
		code = ev.written.Header().Get("X-ClickHouse-Exception-Code")
	}
	if s, ok := chhttp.ParseSummary(ev.summary); ok {
		r.ReadRows, r.ReadBytes, r.WrittenRows, r.ResultRows = s.ReadRows, s.ReadBytes, s.WrittenRows, s.ResultRows
	}
	if c, err := strconv.Atoi(code); err == nil {
		r.ExceptionCode = int32(c)
	} else if r.HTTPStatus >= 400 { // servers before the header: "Code: 60, e.displayText() …"
		r.ExceptionCode = exceptionCode(ev.written.head)
	}
	if ev.proxy {
		r.Type, r.Outcome = audit.Query, "ok"
		if r.HTTPStatus >= 400 || r.HTTPStatus == 0 || r.ExceptionCode != 0 {
			r.Outcome = "failed"
		}
	} else {
		r.Outcome = "refused"
	}
	a.Log.Write(*r)
}

func (ev *event) id() string {
	if ev == nil {
		return ""
	}
	return ev.rec.EventID
}

func (ev *event) writer(w http.ResponseWriter) http.ResponseWriter {
	ev.written = &statusWriter{ResponseWriter: w}
	return ev.written
}

func (ev *event) signedIn(res *authn.Result) {
	if ev == nil {
		return
	}
	ev.known = true
	ev.rec.User, ev.rec.Roles = res.Principal.User, res.Principal.Roles
	ev.rec.Subject, ev.rec.Processor = res.Identity.Subject, res.Identity.Processor
}

func (ev *event) upstream(up *clickhouse.Upstream) {
	if ev != nil {
		ev.rec.Account = up.Account
	}
}

func (ev *event) ids(out *outbound) {
	if ev != nil {
		ev.rec.QueryID, ev.rec.SessionID = out.queryID, out.sessionID
	}
}

// statement records the SQL read from the request: the statement without
// an INSERT's data, as much as the recorder keeps.
func (ev *event) statement(text []byte) {
	if ev == nil || len(text) == 0 {
		return
	}
	sql := string(clickhouse.Statement(text))
	ev.rec.QueryKind = clickhouse.StatementKind(sql)
	ev.rec.Query = ev.keep(sql)
}

// refuse answers err, ClickHouse-style, and records it as the reason.
func (ev *event) refuse(w http.ResponseWriter, err error) {
	writeModeError(w, err)
	if ev != nil {
		ev.rec.FailureReason = err.Error()
	}
}

func (ev *event) proxied() {
	if ev != nil {
		ev.proxy = true
	}
}

// answered keeps ClickHouse's response headers: summary, exception code.
func (ev *event) answered(h http.Header) {
	ev.summary, ev.code = h.Get("X-ClickHouse-Summary"), h.Get("X-ClickHouse-Exception-Code")
}

// statusWriter remembers the status written and, of an error, the start
// of the body (ClickHouse's exception); it passes flushes on.
type statusWriter struct {
	http.ResponseWriter
	status int
	head   []byte
}

// exceptionHead is how much of an error body statusWriter keeps.
const exceptionHead = 32

// exceptionCode reads the code of a body that starts "Code: N".
func exceptionCode(head []byte) int32 {
	rest, ok := bytes.CutPrefix(head, []byte("Code: "))
	if !ok {
		return 0
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	c, _ := strconv.Atoi(string(rest[:end]))
	return int32(c)
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= 400 && len(w.head) < exceptionHead {
		w.head = append(w.head, b[:min(len(b), exceptionHead-len(w.head))]...)
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
