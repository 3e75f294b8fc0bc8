package native

import (
	"net/http"
	"time"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/clickhouse"
)

// event is one query's audit record, as the gateway's: Query for a query
// relayed to ClickHouse, QueryRefused for one clickgate refused. The
// methods of a nil *event do nothing (the audit is off).
type event struct {
	rec   audit.Record
	start time.Time
	keep  func(string) string
	proxy bool
}

func (s *Server) auditStart(c *conn) *event {
	r := s.o.Audit
	if r.Log == nil {
		return nil
	}
	ev := &event{start: time.Now(), keep: r.Statement, rec: audit.Record{
		Type: audit.QueryRefused, EventID: audit.NewEventID(), Interface: Interface, Mode: r.Mode, HTTPUserAgent: c.helloVersion,
	}}
	ev.rec.ClientAddress, ev.rec.ClientPort = authn.SplitAddr(c.client.RemoteAddr().String())
	return ev
}

func (s *Server) auditReady() error {
	if err := s.o.Audit.Log.Ready(); err != nil {
		return &clickhouse.Error{Status: http.StatusServiceUnavailable, Code: clickhouse.CodeNetworkError, Name: "NETWORK_ERROR", Msg: "clickgate: " + err.Error()}
	}
	return nil
}

func (s *Server) auditFinish(ev *event) {
	if ev == nil {
		return
	}
	ev.rec.DurationMicroseconds = uint64(time.Since(ev.start).Microseconds())
	if ev.proxy {
		ev.rec.Type = audit.Query
	} else {
		ev.rec.Outcome = "refused"
	}
	s.o.Audit.Log.Write(ev.rec)
}

func (ev *event) id() string {
	if ev == nil {
		return ""
	}
	return ev.rec.EventID
}

func (ev *event) signedIn(res *authn.Result) {
	if ev == nil {
		return
	}
	ev.rec.User, ev.rec.Roles = res.Principal.User, res.Principal.Roles
	ev.rec.Subject, ev.rec.Processor = res.Identity.Subject, res.Identity.Processor
}

func (ev *event) upstream(up *clickhouse.Upstream) {
	if ev != nil {
		ev.rec.Account = up.Account
	}
}

func (ev *event) ids(queryID string) {
	if ev != nil {
		ev.rec.QueryID = queryID
	}
}

func (ev *event) statement(sql string) {
	if ev == nil || sql == "" {
		return
	}
	st := string(clickhouse.Statement([]byte(sql)))
	ev.rec.QueryKind = clickhouse.StatementKind(st)
	ev.rec.Query = ev.keep(st)
}

func (ev *event) refused(r *refusal) {
	if ev != nil {
		ev.rec.FailureReason = r.msg
		ev.rec.ExceptionCode = int32(r.code)
	}
}

func (ev *event) proxied() {
	if ev != nil {
		ev.proxy = true
	}
}

func (ev *event) exception(code int32) {
	if ev != nil {
		ev.rec.ExceptionCode = code
	}
}

func (ev *event) outcome(o string) {
	if ev != nil {
		ev.rec.Outcome = o
	}
}

func (ev *event) progress(rows, bytes, written uint64) {
	if ev != nil {
		ev.rec.ReadRows += rows
		ev.rec.ReadBytes += bytes
		ev.rec.WrittenRows += written
	}
}

func (ev *event) result(rows uint64) {
	if ev != nil {
		ev.rec.ResultRows += rows
	}
}
