// Package gateway re-serves ClickHouse's HTTP interface with token
// sign-in: it authenticates the caller, removes every credential the
// client sent, adds the upstream mode's credentials and fixed settings,
// and streams everything else through an httputil.ReverseProxy.
package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/clickhouse"
)

// Authenticator resolves credentials to a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, c authn.Credentials, iface string) (*authn.Result, error)
}

// Gateway is the ClickHouse HTTP interface behind token sign-in.
type Gateway struct {
	auth     Authenticator
	mode     clickhouse.Mode
	settings url.Values // clickhouse.settings, fixed for every query
	proxy    *httputil.ReverseProxy
	log      *slog.Logger
}

// Options configure a Gateway.
type Options struct {
	Target    *url.URL
	Auth      Authenticator
	Mode      clickhouse.Mode
	Settings  map[string]string
	Transport http.RoundTripper
	Logger    *slog.Logger
}

// NewTransport is a pooled transport for ClickHouse: keep-alive
// connections are reused across requests and callers.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // long queries send headers late
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		// Large results stream through; big buffers mean fewer reads.
		ReadBufferSize:  256 << 10,
		WriteBufferSize: 256 << 10,
	}
}

// bufferPool recycles the proxy's copy buffers across responses.
type bufferPool struct{ pool sync.Pool }

const copyBufferSize = 64 << 10

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, copyBufferSize)
}

func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// New returns a Gateway.
func New(o Options) *Gateway {
	g := &Gateway{auth: o.Auth, mode: o.Mode, settings: url.Values{}, log: o.Logger}
	for k, v := range o.Settings {
		g.settings.Set(k, v)
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	target := o.Target
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.RawQuery = pr.In.Context().Value(rewriteKey{}).(string)
			up := pr.In.Context().Value(upstreamKey{}).(*clickhouse.Upstream)
			for _, h := range clientCredentialHeaders {
				pr.Out.Header.Del(h)
			}
			for k, v := range up.Header {
				pr.Out.Header[k] = v
			}
		},
		Transport:     o.Transport,
		BufferPool:    &bufferPool{},
		FlushInterval: -1, // progress headers and streamed results go out at once
		ErrorHandler:  g.upstreamError,
		ErrorLog:      slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	return g
}

type rewriteKey struct{}
type upstreamKey struct{}

// clientCredentialHeaders are removed from every request: ClickHouse
// must see only the credentials of the upstream mode. X-Id-Token is
// Grafana's forwarded ID token, a credential too.
var clientCredentialHeaders = []string{
	"Authorization", "Proxy-Authorization", "X-ClickHouse-User", "X-ClickHouse-Key",
	"X-ClickHouse-Quota", "X-Id-Token", "Cookie",
}

// clientCredentialParams are removed from every query string.
var clientCredentialParams = []string{"user", "password", "quota_key"}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ping" && r.Header.Get("Authorization") == "" {
		// ClickHouse answers /ping without credentials; so do we, for
		// load balancers. Nothing else is reachable without a token.
		ctx := context.WithValue(r.Context(), upstreamKey{}, &clickhouse.Upstream{})
		g.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, rewriteKey{}, "")))
		return
	}
	creds, err := credentials(r)
	if err != nil {
		writeAuthError(w, err)
		return
	}
	res, err := g.auth.Authenticate(r.Context(), r, creds, audit.InterfaceGateway)
	if err != nil {
		writeAuthError(w, err)
		return
	}
	up, err := g.mode.Upstream(r.Context(), &clickhouse.Caller{Token: creds.Token, Identity: res.Identity, Principal: res.Principal})
	if err != nil {
		writeModeError(w, err)
		return
	}
	query, err := g.rewriteQuery(r, up, res.Principal.User)
	if err != nil {
		writeModeError(w, err)
		return
	}
	if err := bufferSmallBody(r); err != nil {
		writeException(w, http.StatusBadRequest, 33, "CANNOT_READ_ALL_DATA", "clickgate: reading the request body: "+err.Error())
		return
	}
	ctx := context.WithValue(r.Context(), upstreamKey{}, up)
	ctx = context.WithValue(ctx, rewriteKey{}, query)
	g.proxy.ServeHTTP(w, r.WithContext(ctx))
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
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return nil
}

// rewriteQuery returns the upstream query string: client credentials
// removed, session_id namespaced per principal, fixed settings applied
// over the client's, and the mode's query prefix in place. A prefix that
// must go into the body is put there.
func (g *Gateway) rewriteQuery(r *http.Request, up *clickhouse.Upstream, user string) (string, error) {
	q := r.URL.Query()
	for _, p := range clientCredentialParams {
		q.Del(p)
	}
	if sid := q.Get("session_id"); sid != "" {
		q.Set("session_id", sessionNamespace(user)+sid)
	}
	for k, v := range g.settings {
		q[k] = v
	}
	for k, v := range up.Settings {
		q[k] = v
	}
	if up.QueryPrefix != "" {
		if err := prefixQuery(r, q, up.QueryPrefix); err != nil {
			return "", err
		}
	}
	return q.Encode(), nil
}

// sessionNamespace keeps sessions of different people apart even when
// they share one ClickHouse account (mapped and service modes).
func sessionNamespace(user string) string {
	h := sha256.Sum256([]byte(user))
	return "cg" + hex.EncodeToString(h[:8]) + "_"
}

// prefixQuery puts prefix before the query: in the query parameter when
// there is one (ClickHouse appends the body to it), else before the body.
func prefixQuery(r *http.Request, q url.Values, prefix string) error {
	if qs := q.Get("query"); qs != "" {
		q.Set("query", prefix+qs)
		return nil
	}
	if r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodGet {
		return nil // no query: /ping, /replicas_status, the play UI
	}
	switch {
	case r.Header.Get("Content-Encoding") != "" || q.Get("decompress") == "1":
		return cannotWrap("a compressed request body that holds the query")
	case strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data"):
		return cannotWrap("a multipart body")
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(strings.NewReader(prefix), r.Body), r.Body}
	if r.ContentLength >= 0 {
		r.ContentLength += int64(len(prefix))
	}
	r.Header.Del("Content-Length")
	return nil
}

func cannotWrap(what string) error {
	return &clickhouse.Error{Status: http.StatusBadRequest, Code: 62, Name: "SYNTAX_ERROR",
		Msg: "clickgate: impersonate mode cannot put EXECUTE AS before " + what + "; send the query in the query parameter"}
}

// credentials finds the token where ClickHouse clients put a password:
// Authorization (Bearer, or Basic with the token as password), the
// X-ClickHouse-User/Key headers, or the user/password parameters.
func credentials(r *http.Request) (authn.Credentials, error) {
	c, err := authn.FromRequest(r)
	if !errors.Is(err, authn.ErrNoCredentials) || r.Header.Get("Authorization") != "" {
		return c, err
	}
	if key := r.Header.Get("X-ClickHouse-Key"); key != "" {
		return authn.Credentials{Token: key, User: r.Header.Get("X-ClickHouse-User")}, nil
	}
	q := r.URL.Query()
	if pw := q.Get("password"); pw != "" {
		return authn.Credentials{Token: pw, User: q.Get("user")}, nil
	}
	return c, err
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
	g.log.Warn("gateway: ClickHouse unreachable", "error", err)
	writeException(w, http.StatusBadGateway, clickhouse.CodeNetworkError, "NETWORK_ERROR", "clickgate: ClickHouse is unreachable")
}

// writeException writes a ClickHouse-style error.
func writeException(w http.ResponseWriter, status, code int, name, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Header().Set("X-ClickHouse-Exception-Code", fmt.Sprint(code))
	w.WriteHeader(status)
	fmt.Fprintf(w, "Code: %d. DB::Exception: %s. (%s)\n", code, strings.TrimSuffix(msg, "."), name)
}
