package mcp

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/clickhouse"
)

// Progress of long queries (notifications/progress).
//
// ClickHouse's X-ClickHouse-Progress headers are no use here: they are
// part of the response's header block, which Go's HTTP client hands over
// all at once when the body starts, so a query that runs a minute before
// its first row reports nothing while it runs. Instead, while a tool call
// that carries a progress token runs its query, clickgate asks
// system.processes about that query (by the query_id it sent) about once
// a second, as the same person's account with readonly settings, and
// passes what it reads on as a progress notification. A call without a
// progress token costs nothing: no goroutine, no polling query.
//
// Delivery: over stdio (clickgate mcp) notifications flow on the one
// stream. Over Streamable HTTP the SDK, with JSONResponse, answers a
// request with one application/json body and sends everything else (the
// progress notifications) to the standalone SSE stream, which a stateless
// server has not got: they would be dropped ("write to closed stream").
// So HTTPHandler answers the requests that carry a progress token as
// text/event-stream (which every client accepts: the transport requires
// Accept to name both), where the SDK writes notifications related to a
// request on that request's stream before its response; every other
// request keeps its plain JSON answer.

// progressInterval is how often a running query's progress is polled.
var progressInterval = time.Second

// progressTarget is where a tool call's progress goes.
type progressTarget struct {
	token   any
	session *mcp.ServerSession
}

type progressKey struct{}

// trackProgress notes, for a tools/call that carries a progress token,
// where its query's progress is to be sent.
func trackProgress(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if call, ok := req.(*mcp.CallToolRequest); ok && method == "tools/call" && call.Params != nil && call.Session != nil {
			if tok := call.Params.GetProgressToken(); tok != nil {
				ctx = context.WithValue(ctx, progressKey{}, &progressTarget{token: tok, session: call.Session})
			}
		}
		return next(ctx, method, req)
	}
}

func progressFrom(ctx context.Context) *progressTarget {
	p, _ := ctx.Value(progressKey{}).(*progressTarget)
	return p
}

// wantsProgress reports whether the call running on ctx asked for progress.
func wantsProgress(ctx context.Context) bool { return progressFrom(ctx) != nil }

// progressQueryID is a query_id for a call that asked for progress but
// has none from the audit trail (audit off): polling needs one.
func progressQueryID() string {
	b := make([]byte, 16)
	_, _ = crand.Read(b)
	return "clickgate-progress-" + hex.EncodeToString(b)
}

// plainQueryID is what may be quoted into the polling query unescaped.
var plainQueryID = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// queryProgress is one row of system.processes.
type queryProgress struct {
	readRows, totalRows uint64
	elapsed             time.Duration
}

// watchProgress polls system.processes for queryID as up, with settings
// (readonly: the caller's read settings), and notifies the call's
// progress target each time more rows have been read. The returned stop
// ends the polling and returns only once no notification can follow, so
// none is ever sent after the call's result. Without a progress target
// (or a query_id) it does nothing.
func (s *Server) watchProgress(ctx context.Context, up *clickhouse.Upstream, settings url.Values, queryID string) (stop func()) {
	p := progressFrom(ctx)
	if p == nil || queryID == "" || !plainQueryID.MatchString(queryID) {
		return func() {}
	}
	poll := url.Values{}
	for k, v := range settings {
		if k != "query_id" {
			poll[k] = v
		}
	}
	poll.Set("default_format", "TabSeparated")
	sql := "SELECT read_rows, total_rows_approx, elapsed FROM system.processes WHERE query_id = '" + queryID + "'"

	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		var last uint64
		sent := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pr, ok := s.pollProgress(ctx, up, sql, poll)
			if !ok || ctx.Err() != nil || (sent && pr.readRows <= last) {
				continue
			}
			params := &mcp.ProgressNotificationParams{ProgressToken: p.token, Progress: float64(pr.readRows), Message: progressMessage(pr)}
			if pr.totalRows > 0 {
				params.Total = float64(max(pr.totalRows, pr.readRows))
			}
			if err := p.session.NotifyProgress(ctx, params); err != nil {
				s.opt.Logger.Debug("mcp: progress notification not sent", "error", err)
				return // the client is gone, or the transport cannot carry it
			}
			last, sent = pr.readRows, true
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// pollProgress reads the query's row of system.processes; false when the
// query is not (or no longer) running, or the poll failed.
func (s *Server) pollProgress(ctx context.Context, up *clickhouse.Upstream, sql string, settings url.Values) (queryProgress, bool) {
	ctx, cancel := context.WithTimeout(ctx, progressInterval+5*time.Second)
	defer cancel()
	body, _, err := s.opt.Querier.Query(ctx, up, sql, settings)
	if err != nil {
		return queryProgress{}, false
	}
	defer body.Close()
	line, err := bufio.NewReader(io.LimitReader(body, 4096)).ReadString('\n')
	if err != nil {
		return queryProgress{}, false
	}
	f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
	if len(f) != 3 {
		return queryProgress{}, false
	}
	read, err1 := strconv.ParseUint(f[0], 10, 64)
	total, err2 := strconv.ParseUint(f[1], 10, 64)
	secs, err3 := strconv.ParseFloat(f[2], 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return queryProgress{}, false
	}
	return queryProgress{readRows: read, totalRows: total, elapsed: time.Duration(secs * float64(time.Second))}, true
}

// progressMessage reads like "read 1.2M of 10M rows, 3 s".
func progressMessage(p queryProgress) string {
	secs := fmt.Sprintf("%d s", int(p.elapsed.Round(time.Second)/time.Second))
	if p.totalRows > 0 {
		return fmt.Sprintf("read %s of %s rows, %s", shortCount(p.readRows), shortCount(max(p.totalRows, p.readRows)), secs)
	}
	return fmt.Sprintf("read %s rows, %s", shortCount(p.readRows), secs)
}

// shortCount writes n as 950, 12K, 1.2M, 3.4G.
func shortCount(n uint64) string {
	units := []struct {
		div    float64
		suffix string
	}{{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "K"}}
	for _, u := range units {
		if float64(n) >= u.div {
			v := float64(n) / u.div
			if v >= 100 {
				return fmt.Sprintf("%.0f%s", v, u.suffix)
			}
			return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", v), "0"), ".") + u.suffix
		}
	}
	return strconv.FormatUint(n, 10)
}

// byProgressToken sends the requests that carry a progress token to sse
// (a handler answering as text/event-stream, where notifications can
// precede the response) and the rest to plain.
func byProgressToken(plain, sse http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := r.Context().Value(peekKey{}).(peeked); ok && p.progress {
			sse.ServeHTTP(w, r)
			return
		}
		plain.ServeHTTP(w, r)
	})
}
