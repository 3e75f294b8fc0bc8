// Package gateway re-serves ClickHouse's HTTP interface with token
// sign-in: it authenticates the caller, removes every credential the
// client sent, adds the upstream mode's credentials and fixed settings,
// and streams everything else through an httputil.ReverseProxy.
package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/chpool"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/limits"
	"github.com/clickgate/clickgate/internal/lograte"
)

// Authenticator resolves credentials to a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, c authn.Credentials, iface string) (*authn.Result, error)
}

// Gateway is the ClickHouse HTTP interface behind token sign-in.
type Gateway struct {
	auth  Authenticator
	mode  clickhouse.Mode
	fixed map[string]string // clickhouse.settings, fixed for every query
	// policies caches the SQL policy by what it depends on: whether the
	// account is shared and the names of the mode's settings.
	policies sync.Map // policyKey → clickhouse.TextPolicy
	proxy    *httputil.ReverseProxy
	log      *slog.Logger
	audit    auditor
	limits   *limits.Limiter // nil: none
}

// Options configure a Gateway.
type Options struct {
	Target    *url.URL
	Auth      Authenticator
	Mode      clickhouse.Mode
	Settings  map[string]string
	Transport http.RoundTripper
	Logger    *slog.Logger
	Audit     audit.Recorder
	// Limits bound each person's requests (shared with MCP); nil: none.
	Limits *limits.Limiter
}

// NewTransport is a pooled transport for ClickHouse: keep-alive
// connections are reused across requests and callers.
//
// Every upstream connection keeps its read and write buffers for its
// whole life, busy or idle, so they are small: a large result does not
// need them, because the proxy reads it with copyBufferSize buffers and
// bufio hands reads at least as large as its buffer straight to the
// socket. (They were 256 KiB each: with 200 client connections busy, half
// of clickgate's ~800 KB per connection.)
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // long queries send headers late
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		ReadBufferSize:        upstreamBufferSize,
		WriteBufferSize:       upstreamBufferSize,
	}
}

// upstreamBufferSize is the read and the write buffer of each upstream
// connection: headers and chunk sizes; ClickHouse's progress headers fit.
const upstreamBufferSize = 8 << 10

// bufferPool recycles the proxy's copy buffers across responses. One is
// held per response in flight, for the whole response.
type bufferPool struct{ pool sync.Pool }

// copyBufferSize is the proxy's copy buffer: large enough that a big
// result streams in few reads and writes, small enough that many
// responses in flight at once (an outage's many errors, hundreds of
// keep-alive clients) cost little.
const copyBufferSize = 32 << 10

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, copyBufferSize)
}

func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// New returns a Gateway.
func New(o Options) *Gateway {
	g := &Gateway{auth: o.Auth, mode: o.Mode, fixed: o.Settings, log: o.Logger, audit: auditor{o.Audit}, limits: o.Limits}
	if g.log == nil {
		g.log = slog.Default()
	}
	target := o.Target
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			out := pr.In.Context().Value(outboundKey{}).(*outbound)
			pr.SetURL(target) // the inbound path is "/", checked in ServeHTTP
			pr.Out.URL.RawQuery = out.rawQuery
			for _, h := range clientCredentialHeaders {
				pr.Out.Header.Del(h)
			}
			for k, v := range out.up.Header {
				pr.Out.Header[k] = v
			}
			if out.up.Person != "" {
				pr.Out.Header.Set("User-Agent", out.up.UserAgent(pr.In.UserAgent()))
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			out := resp.Request.Context().Value(outboundKey{}).(*outbound)
			if out.event != nil {
				out.event.answered(resp.Header)
			}
			stripNamespace(resp.Header, out.namespace)
			return nil
		},
		Transport:     o.Transport,
		BufferPool:    &bufferPool{},
		FlushInterval: -1, // progress headers and streamed results go out at once
		ErrorHandler:  g.upstreamError,
		ErrorLog:      slog.NewLogLogger(lograte.NewHandler(g.log.Handler(), lograte.DefaultEvery), slog.LevelWarn), // one line per cut stream would flood the log in an outage
	}
	return g
}

// outbound is what ServeHTTP decided for the upstream request.
type outbound struct {
	up        *clickhouse.Upstream
	rawQuery  string
	namespace string
	queryID   string
	sessionID string
	event     *event // nil when the audit is off
}

type outboundKey struct{}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.EscapedPath() {
	case "/":
	case "/ping":
		ping(w, r)
		return
	default:
		writeException(w, http.StatusNotFound, codeUnknownHandler, "UNKNOWN_HANDLER",
			"clickgate: there is no handler for this path; the gateway serves ClickHouse queries at / only")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, POST")
		writeException(w, http.StatusMethodNotAllowed, codeBadArguments, "BAD_ARGUMENTS", "clickgate: the method "+clip(r.Method)+" is not served; use GET or POST")
		return
	}
	ev := g.audit.start(r)
	if ev != nil {
		w = ev.writer(w)
		defer g.audit.finish(ev)
	}
	ps, err := parseParams(r.URL.RawQuery)
	if err == nil {
		err = checkHeaders(r.Header)
	}
	if err != nil {
		writeModeError(w, err)
		return
	}
	creds, err := credentials(r, ps)
	if err != nil {
		if e, ok := errors.AsType[*clickhouse.Error](err); ok {
			writeModeError(w, e)
			return
		}
		writeAuthError(w, err)
		return
	}
	res, err := g.auth.Authenticate(r.Context(), r, creds, audit.InterfaceGateway)
	if err != nil {
		writeAuthError(w, err)
		return
	}
	ev.signedIn(res)
	if err := g.audit.ready(); err != nil {
		ev.refuse(w, err)
		return
	}
	// The person's limits; the slot is held until the response is written.
	release, err := g.limits.Acquire(r.Context(), res.Principal.User, res.Principal.Roles, r.RemoteAddr)
	if err != nil {
		if rf, ok := errors.AsType[*limits.Refusal](err); ok {
			if s := rf.RetryAfterSeconds(); s > 0 {
				w.Header().Set("Retry-After", fmt.Sprint(s))
			}
			err = &clickhouse.Error{Status: rf.Status, Code: rf.Code, Name: rf.Name, Msg: rf.Message}
		}
		ev.refuse(w, err)
		return
	}
	defer release()
	up, err := g.mode.Upstream(r.Context(), &clickhouse.Caller{Token: creds.Token, Identity: res.Identity, Principal: res.Principal, EventID: ev.id()})
	if err != nil {
		ev.refuse(w, err)
		return
	}
	out := &outbound{up: up, namespace: clickhouse.Namespace(res.Principal.User), event: ev}
	ev.upstream(up)
	policy := g.policy(up)
	err = g.rewriteParams(out, ps, g.fixed, up.Settings, policy)
	ev.ids(out)
	if err == nil {
		err = bufferSmallBody(r)
	}
	var text []byte
	if err == nil {
		text, err = checkBody(r, ps, policy, g.audit.wantsText())
		ev.statement(text)
	}
	if err == nil && up.QueryPrefix != "" {
		out.rawQuery, err = prefixQuery(r, out.rawQuery, up.QueryPrefix)
	}
	if err != nil {
		ev.refuse(w, err)
		return
	}
	ev.proxied()
	g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), outboundKey{}, out)))
}

// policy is what the SQL sent for up may not do.
func (g *Gateway) policy(up *clickhouse.Upstream) clickhouse.TextPolicy {
	key := policyKey{shared: up.Shared}
	if len(up.Settings) > 0 {
		names := make([]string, 0, len(up.Settings))
		for k := range up.Settings {
			names = append(names, k)
		}
		slices.Sort(names)
		key.settings = strings.Join(names, ",")
	}
	if p, ok := g.policies.Load(key); ok {
		return p.(clickhouse.TextPolicy)
	}
	p := clickhouse.PolicyFor(g.fixed, up) // depends on the names only
	g.policies.Store(key, p)
	return p
}

// policyKey is what a policy depends on besides the fixed settings.
type policyKey struct {
	shared   bool
	settings string // the mode's setting names, sorted, joined by ","
}

// codeUnknownHandler is ClickHouse's answer for a path it has no handler for.
const codeUnknownHandler = 675

// ping answers /ping as ClickHouse does, without asking it: load
// balancers need no credentials, and nothing of the request goes on.
func ping(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeException(w, http.StatusMethodNotAllowed, codeBadArguments, "BAD_ARGUMENTS", "clickgate: /ping answers GET and HEAD only")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	_, _ = io.WriteString(w, "Ok.\n")
}

// maxBufferedBody is the largest request body read into memory before it
// is sent on; larger ones (big INSERTs) stream.
const maxBufferedBody = 1 << 20

// bufferSmallBody reads a small request body into memory. ClickHouse may
// answer (a refused INSERT, say) before it has read the body; the
// transport then finishes writing the body in the background, and if it
// were still reading the client's connection when this handler returns,
// the server would close that body under it and the failed write would
// close the upstream connection — by then reused for someone else's
// request, whose answer is cut. From memory the write never fails.
func bufferSmallBody(r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength < 0 || r.ContentLength > maxBufferedBody {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
	if err != nil {
		return badRequest("reading the request body: %v", err)
	}
	r.Body = &memoryBody{bytes.NewReader(body), body}
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return nil
}

// memoryBody is a request body read into memory, which the checks read
// without copying.
type memoryBody struct {
	*bytes.Reader
	data []byte
}

func (*memoryBody) Close() error { return nil }

// prefixQuery puts prefix before the query: in the query parameter when
// there is one (ClickHouse appends the body to it), else before the body.
func prefixQuery(r *http.Request, rawQuery, prefix string) (string, error) {
	q, _ := url.ParseQuery(rawQuery) // built by rewriteParams: valid, each name once
	if qs := q.Get("query"); qs != "" {
		q.Set("query", prefix+qs)
		return q.Encode(), nil
	}
	if !hasBody(r) || r.Method == http.MethodGet {
		return rawQuery, nil // no query: ClickHouse answers "Ok."
	}
	switch {
	case r.Header.Get("Content-Encoding") != "" || q.Has("decompress"):
		return "", cannotWrap("a compressed request body that holds the query")
	case isMultipart(r):
		return "", cannotWrap("a multipart body")
	}
	r.Body = readCloser{io.MultiReader(strings.NewReader(prefix), r.Body), r.Body}
	if r.ContentLength >= 0 {
		r.ContentLength += int64(len(prefix))
	}
	r.Header.Del("Content-Length")
	r.GetBody = nil
	return rawQuery, nil
}

func cannotWrap(what string) error {
	return &clickhouse.Error{Status: http.StatusBadRequest, Code: 62, Name: "SYNTAX_ERROR",
		Msg: "clickgate: impersonate mode cannot put EXECUTE AS before " + what + "; send the query in the query parameter"}
}

// writeAuthError answers like ClickHouse does for bad credentials, so
// ClickHouse clients show a readable message, with a Bearer challenge.
func writeAuthError(w http.ResponseWriter, err error) {
	w.Header().Set("WWW-Authenticate", authn.Challenge(err))
	writeException(w, authn.Status(err), clickhouse.CodeAuthenticationFailed, "AUTHENTICATION_FAILED", "clickgate: "+err.Error())
}

func writeModeError(w http.ResponseWriter, err error) {
	var e *clickhouse.Error
	if errors.As(err, &e) {
		writeException(w, e.Status, e.Code, e.Name, e.Msg)
		return
	}
	writeException(w, http.StatusBadGateway, clickhouse.CodeNetworkError, "NETWORK_ERROR", "clickgate: "+err.Error())
}

func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(r.Context().Err(), context.Canceled) {
		return // the client went away; the upstream request was cancelled with it
	}
	if e, ok := errors.AsType[*clickhouse.Error](err); ok {
		writeModeError(w, e) // the body was refused as it streamed (a multipart field)
		return
	}
	// One line per failed request would flood the log during an outage.
	lograte.Warn(g.log, "gateway: ClickHouse unreachable", "error", err)
	if e, ok := errors.AsType[*chpool.Error](err); ok && (e.Code != chpool.CodeNetworkError || e.Node == "") {
		// A timeout, a lost session, no node up: the pool's words (they
		// name the node, as ClickHouse's own messages name their host).
		writeException(w, e.Status, e.Code, e.Name, e.Msg)
		return
	}
	writeException(w, http.StatusBadGateway, clickhouse.CodeNetworkError, "NETWORK_ERROR", "clickgate: ClickHouse is unreachable")
}

// writeException writes a ClickHouse-style error.
func writeException(w http.ResponseWriter, status, code int, name, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Header().Set("X-ClickHouse-Exception-Code", fmt.Sprint(code))
	w.WriteHeader(status)
	fmt.Fprintf(w, "Code: %d. DB::Exception: %s. (%s)\n", code, strings.TrimSuffix(msg, "."), name)
}
