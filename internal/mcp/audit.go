package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/chhttp"
	"github.com/clickgate/clickgate/internal/clickhouse"
)

// toolCall is one tool call's audit record while the call runs; the
// queries it sends add to it (run).
type toolCall struct {
	mu      sync.Mutex
	rec     audit.Record
	queries int
	capped  bool
	refused error // clickgate refused the call (policy, limits)
}

type toolCallKey struct{}

// auditToolCalls records every tools/call, whatever the tool.
func (s *Server) auditToolCalls(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		call, ok := req.(*mcp.CallToolRequest)
		if s.opt.Audit.Log == nil || !ok || method != "tools/call" {
			return next(ctx, method, req)
		}
		start := time.Now()
		tc := &toolCall{rec: audit.Record{Type: audit.ToolCall, EventID: audit.NewEventID(), Interface: audit.InterfaceMCP,
			Mode: s.opt.Audit.Mode, Tool: call.Params.Name, Arguments: recordedArguments(call.Params.Arguments, s.opt.Audit.Verbatim)}}
		tc.client(call)
		res, err := next(context.WithValue(ctx, toolCallKey{}, tc), method, req)
		tc.mu.Lock()
		defer tc.mu.Unlock()
		r := &tc.rec
		r.DurationMicroseconds = uint64(time.Since(start).Microseconds())
		result, _ := res.(*mcp.CallToolResult)
		switch {
		case tc.refused != nil:
			r.Outcome, r.FailureReason = "refused", tc.refused.Error()
		case err != nil:
			r.Outcome, r.FailureReason = "failed", err.Error()
		case result != nil && result.IsError:
			r.Outcome, r.FailureReason = "failed", errorText(result)
		case tc.capped:
			r.Outcome = "capped"
		default:
			r.Outcome = "ok"
		}
		if r.ExceptionCode != 0 && !s.opt.Audit.Verbatim {
			// ClickHouse's messages quote the query (syntax errors, say).
			r.FailureReason = fmt.Sprintf("ClickHouse exception, code %d", r.ExceptionCode)
		}
		if r.User != "" { // a call without a caller never reached ClickHouse
			s.opt.Audit.Log.Write(*r)
		}
		return res, err
	}
}

// client records who is calling, from what.
func (tc *toolCall) client(call *mcp.CallToolRequest) {
	if info := call.ClientInfo(); info != nil {
		tc.rec.HTTPUserAgent = info.Name + "/" + info.Version
	}
	if call.Extra == nil || call.Extra.TokenInfo == nil {
		return
	}
	if ua := call.Extra.Header.Get("User-Agent"); ua != "" {
		tc.rec.HTTPUserAgent = ua
	}
	if addr, ok := call.Extra.TokenInfo.Extra[tokenInfoRemote].(string); ok {
		tc.rec.ClientAddress, tc.rec.ClientPort = authn.SplitAddr(addr)
	}
}

// recordedArguments is the call's arguments less the query, which the
// event keeps in its query field. Unless statements are kept verbatim,
// only names (database, table) keep their values: a LIKE pattern or a
// cursor becomes "?".
func recordedArguments(raw json.RawMessage, verbatim bool) string {
	var args map[string]json.RawMessage
	if json.Unmarshal(raw, &args) != nil {
		return ""
	}
	delete(args, "query")
	if len(args) == 0 {
		return ""
	}
	if !verbatim {
		for k := range args {
			if k != "database" && k != "table" {
				args[k] = json.RawMessage(`"?"`)
			}
		}
	}
	b, _ := json.Marshal(args)
	return string(b)
}

func errorText(r *mcp.CallToolResult) string {
	for _, c := range r.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			return t.Text
		}
	}
	return ""
}

// callFrom returns the tool call that ctx runs for, nil without audit.
func callFrom(ctx context.Context) *toolCall {
	tc, _ := ctx.Value(toolCallKey{}).(*toolCall)
	return tc
}

// caller records the person; it returns the caller to send queries as,
// which names the event (log_comment on shared accounts).
func (tc *toolCall) caller(c *clickhouse.Caller) *clickhouse.Caller {
	if tc == nil {
		return c
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	r := &tc.rec
	r.User, r.Roles = c.Principal.User, c.Principal.Roles
	if c.Identity != nil {
		r.Subject, r.Processor = c.Identity.Subject, c.Identity.Processor
	}
	cc := *c
	cc.EventID = r.EventID
	return &cc
}

// queryID is the id of the call's next query: the event id, then -2, -3…
// for the calls that send more than one.
func (tc *toolCall) queryID() string {
	if tc == nil {
		return ""
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.queries++
	if tc.queries == 1 {
		return tc.rec.EventID
	}
	return tc.rec.EventID + "-" + strconv.Itoa(tc.queries)
}

// sent records a query the call sent and how it went: every statement's
// SQL (";"-separated), the first one's account and query id, rows summed.
func (tc *toolCall) sent(rec audit.Recorder, text string, up *clickhouse.Upstream, queryID string, header http.Header, res *Result, err error) {
	if tc == nil {
		return
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	r := &tc.rec
	if r.QueryID == "" {
		r.QueryID = queryID
		if up != nil {
			r.Account = up.Account
		}
		r.QueryKind = clickhouse.StatementKind(text)
	}
	switch text = rec.Statement(text); {
	case text == "":
	case r.Query == "":
		r.Query = text
	default:
		r.Query += ";\n" + text
	}
	if s, ok := chhttp.ParseSummary(header.Get("X-ClickHouse-Summary")); ok {
		r.ReadRows += s.ReadRows
		r.ReadBytes += s.ReadBytes
		r.WrittenRows += s.WrittenRows
	}
	if res != nil {
		r.ResultRows += uint64(res.RowCount)
		tc.capped = tc.capped || res.Truncated
	}
	var ex *clickhouse.Exception
	var refusal *clickhouse.Error
	switch {
	case errors.As(err, &ex):
		r.ExceptionCode = int32(ex.Code)
	case errors.As(err, &refusal):
		tc.refused = refusal
		r.ExceptionCode = int32(refusal.Code)
	}
}

// refuse records a refusal before any query was sent (a limit).
func (tc *toolCall) refuse(err error) {
	if tc == nil {
		return
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.refused = err
}
