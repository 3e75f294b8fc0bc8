package native

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/limits"
	"github.com/clickgate/clickgate/internal/lograte"
)

// ClickHouse's markers in a Hello's user name (src/Core/Protocol.h).
const (
	jwtMarker         = " JWT AUTHENTICATION "
	defaultClientUser = "default" // what clients send when no user is given
)

// Exception codes clickgate answers with.
const (
	codeBadArguments     = 36
	codeUnknownSetting   = 115
	codeUnexpectedPacket = 102
	codeConstraint       = 452 // SETTING_CONSTRAINT_VIOLATION
)

// refusal is an answer clickgate gives instead of ClickHouse.
type refusal struct {
	code  int
	name  string
	msg   string
	fatal bool // the connection cannot go on
}

func (r *refusal) Error() string { return r.msg }

func asRefusal(err error) *refusal {
	if r, ok := errors.AsType[*refusal](err); ok {
		return r
	}
	if e, ok := errors.AsType[*clickhouse.Error](err); ok {
		return &refusal{code: e.Code, name: e.Name, msg: e.Msg}
	}
	if e, ok := errors.AsType[*limits.Refusal](err); ok {
		return &refusal{code: e.Code, name: e.Name, msg: "clickgate: " + e.Message}
	}
	return nil
}

// bufferSize is each connection's read and write buffer, on both sides
// (four per client connection, held while it is open, idle or not).
// Streams ran no faster with 128 KiB or 1 MiB (bench/native).
const bufferSize = 64 << 10

// Bounds of the Hello.
const (
	maxHelloText  = 1 << 10
	maxTokenBytes = 64 << 10
)

type conn struct {
	s      *Server
	client net.Conn
	cr     *bufio.Reader
	cw     *bufio.Writer
	cwMu   sync.Mutex
	csrc   *rawSource

	up  net.Conn
	ur  *bufio.Reader
	uw  *bufio.Writer
	rev int // negotiated

	upstreamUser string // the user of the upstream Hello
	helloName    string
	helloVersion string
	creds        authn.Credentials
	res          *authn.Result
	ns           string

	ctx    context.Context
	cancel context.CancelFunc

	// lastException is the code of the server's last exception.
	lastException proto.Exception
	// skipping: the last query was refused; its data packets are dropped.
	skipping bool
	// clientCompression is the running query's: whether the client reads
	// and sends compressed blocks; upstreamCompression whether ClickHouse
	// does.
	clientCompression   atomic.Bool
	upstreamCompression atomic.Bool

	mu       sync.Mutex
	q        *inflight // the query ClickHouse is running, nil when none
	draining bool
	closed   bool
}

// inflight is a query relayed to ClickHouse, until its end.
type inflight struct {
	ev        *event
	release   func()
	done      chan struct{}
	cancelled bool
}

func newConn(s *Server, c net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	cn := &conn{s: s, client: c, cr: bufio.NewReaderSize(c, bufferSize), cw: bufio.NewWriterSize(c, bufferSize), ctx: ctx, cancel: cancel}
	cn.csrc = &rawSource{r: cn.cr}
	return cn
}

// drain ends the connection once no query runs on it.
func (c *conn) drain() {
	c.mu.Lock()
	c.draining = true
	idle := c.q == nil
	c.mu.Unlock()
	if idle {
		c.close()
	}
}

func (c *conn) close() {
	c.mu.Lock()
	c.closed = true
	up := c.up
	c.mu.Unlock()
	c.cancel()
	c.client.Close()
	if up != nil {
		up.Close()
	}
}

func (c *conn) serve() {
	defer c.close()
	if err := c.handshake(); err != nil {
		c.logEnd("handshake", err)
		return
	}
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		err := c.relayUpstream()
		c.endQuery(nil, "failed")
		c.logEnd("upstream", err)
		c.client.Close() // ends the client loop too
	}()
	err := c.relayClient()
	c.logEnd("client", err)
	c.mu.Lock()
	q := c.q
	c.mu.Unlock()
	if q != nil && !errors.Is(err, net.ErrClosed) {
		// The client went away during a query: cancel it, and give
		// ClickHouse a moment to end it before the connection closes.
		c.mu.Lock()
		q.cancelled = true
		c.mu.Unlock()
		_ = c.writeUpstream(func(b []byte) []byte { return appendUVarInt(b, uint64(proto.ClientCodeCancel)) })
		select {
		case <-q.done:
		case <-upDone:
		case <-time.After(5 * time.Second):
		}
	}
	c.up.Close()
	<-upDone
}

func (c *conn) logEnd(side string, err error) {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
		return
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return
	}
	lograte.Warn(c.s.o.Logger, "native: connection ended", "side", side, "client", c.client.RemoteAddr().String(), "error", err)
}

// sendException writes a ClickHouse Exception packet to the client.
func (c *conn) sendException(code int, name, msg string) error {
	b := proto.Buffer{}
	proto.ServerCodeException.Encode(&b)
	e := proto.Exception{Code: proto.Error(code), Name: "DB::Exception", Message: strings.TrimSuffix(msg, ".") + ". (" + name + ")"}
	e.EncodeAware(&b, c.rev)
	c.cwMu.Lock()
	defer c.cwMu.Unlock()
	if _, err := c.cw.Write(b.Buf); err != nil {
		return err
	}
	return c.cw.Flush()
}

func (c *conn) refuseConnection(r *refusal) error {
	_ = c.sendException(r.code, r.name, r.msg)
	return r
}

// handshake reads the client's Hello, signs the person in, opens the
// upstream connection as their account and answers the client's Hello.
func (c *conn) handshake() error {
	o := c.s.o
	_ = c.client.SetDeadline(time.Now().Add(o.HandshakeTimeout))
	code, err := readUVarInt(c.csrc)
	if err != nil {
		return err
	}
	if code != uint64(proto.ClientCodeHello) {
		return c.refuseConnection(&refusal{code: codeUnexpectedPacket, name: "UNEXPECTED_PACKET_FROM_CLIENT",
			msg: "clickgate: this is ClickHouse's native protocol port; a client must begin with Hello"})
	}
	var h proto.ClientHello
	if h.Name, err = readString(c.csrc, maxHelloText, "the client name"); err != nil {
		return err
	}
	var major, minor, rev uint64
	for _, f := range []*uint64{&major, &minor, &rev} {
		if *f, err = readUVarInt(c.csrc); err != nil {
			return err
		}
	}
	if h.Database, err = readString(c.csrc, maxHelloText, "the database"); err != nil {
		return err
	}
	if h.User, err = readString(c.csrc, maxHelloText, "the user"); err != nil {
		return err
	}
	if h.Password, err = readString(c.csrc, maxTokenBytes, "the password"); err != nil {
		return err
	}
	c.helloName = h.Name
	c.helloVersion = fmt.Sprintf("%s %d.%d", h.Name, major, minor)
	if rev < minClientRevision {
		return c.refuseConnection(&refusal{code: codeBadArguments, name: "BAD_ARGUMENTS",
			msg: fmt.Sprintf("clickgate: the client's protocol revision %d is older than clickgate relays (%d); use a newer client", rev, minClientRevision)})
	}
	c.rev = int(min(rev, proto.Version)) // until the server answers
	creds, err := helloCredentials(h.User, h.Password)
	if err != nil {
		return c.refuseConnection(&refusal{code: clickhouse.CodeAuthenticationFailed, name: "AUTHENTICATION_FAILED", msg: "clickgate: " + err.Error()})
	}
	c.creds = creds
	res, err := o.Auth.AuthenticateClient(c.ctx, authn.Client{Address: c.client.RemoteAddr().String(), UserAgent: c.helloVersion}, creds, Interface)
	if err != nil {
		return c.refuseConnection(&refusal{code: clickhouse.CodeAuthenticationFailed, name: "AUTHENTICATION_FAILED",
			msg: "clickgate: " + err.Error() + "; sign in with a token as password: clickhouse-client --password \"$(clickgate token)\""})
	}
	c.res = res
	c.ns = clickhouse.Namespace(res.Principal.User)
	up, err := o.Mode.Upstream(c.ctx, &clickhouse.Caller{Token: creds.Token, Identity: res.Identity, Principal: res.Principal})
	if err != nil {
		if r := asRefusal(err); r != nil {
			return c.refuseConnection(r)
		}
		return c.refuseConnection(&refusal{code: clickhouse.CodeNetworkError, name: "NETWORK_ERROR", msg: "clickgate: " + err.Error()})
	}
	user, password, err := upstreamCredentials(up)
	c.upstreamUser = user
	if err != nil {
		return c.refuseConnection(&refusal{code: clickhouse.CodeAuthenticationFailed, name: "AUTHENTICATION_FAILED", msg: "clickgate: " + err.Error()})
	}
	if err := c.dial(); err != nil {
		lograte.Warn(o.Logger, "native: ClickHouse unreachable", "error", err)
		return c.refuseConnection(&refusal{code: clickhouse.CodeNetworkError, name: "NETWORK_ERROR", msg: "clickgate: ClickHouse's native interface is unreachable"})
	}
	_ = c.up.SetDeadline(time.Now().Add(o.HandshakeTimeout))
	sent := c.rev
	hb := proto.Buffer{}
	proto.ClientHello{Name: h.Name, Major: int(major), Minor: int(minor), ProtocolVersion: sent, Database: h.Database, User: user, Password: password}.Encode(&hb)
	if _, err := c.uw.Write(hb.Buf); err != nil {
		return err
	}
	if err := c.uw.Flush(); err != nil {
		return err
	}
	usrc := &rawSource{r: c.ur}
	code, err = readUVarInt(usrc)
	if err != nil {
		return err
	}
	switch code {
	case uint64(proto.ServerCodeHello):
	case uint64(proto.ServerCodeException):
		// ClickHouse refused the account: its words, to the client.
		c.cwMu.Lock()
		c.cw.Write(appendUVarInt(nil, code))
		usrc.tee = c.cw
		err := skipException(usrc)
		c.cw.Flush()
		c.cwMu.Unlock()
		if err != nil {
			return err
		}
		return errors.New("ClickHouse refused the upstream account")
	default:
		return protocolError("ClickHouse answered Hello with packet %d", code)
	}
	sh, err := readServerHello(usrc, sent)
	if err != nil {
		return err
	}
	c.rev = min(sent, sh.Revision)
	sh.Revision = c.rev
	b := proto.Buffer{}
	sh.EncodeAware(&b, c.rev)
	c.cwMu.Lock()
	c.cw.Write(b.Buf)
	err = c.cw.Flush()
	c.cwMu.Unlock()
	if err != nil {
		return err
	}
	if proto.FeatureAddendum.In(c.rev) {
		if _, err := readString(c.csrc, maxHelloText, "the quota key"); err != nil { // the client's: replaced
			return err
		}
		if _, err := c.uw.Write(appendString(nil, up.Settings["quota_key"])); err != nil {
			return err
		}
		if err := c.uw.Flush(); err != nil {
			return err
		}
	}
	_ = c.client.SetDeadline(time.Time{})
	_ = c.up.SetDeadline(time.Time{})
	return nil
}

// helloCredentials reads the token and user name of a Hello: the token
// as password with the user empty, "default" (a client's when none is
// given) or the person's ClickHouse user; or clickhouse-client --jwt.
func helloCredentials(user, password string) (authn.Credentials, error) {
	switch {
	case user == jwtMarker:
		user = ""
	case strings.HasPrefix(user, " "):
		return authn.Credentials{}, errors.New("this sign-in method is not served; send the token as password (clickhouse-client --password \"$(clickgate token)\", or --jwt)")
	case user == defaultClientUser:
		user = ""
	}
	if password == "" {
		return authn.Credentials{}, fmt.Errorf("%w; with clickhouse-client: --password \"$(clickgate token)\"", authn.ErrNoCredentials)
	}
	return authn.Credentials{Token: password, User: user}, nil
}

// upstreamCredentials are the user and password for the upstream Hello:
// the mode's Basic credentials, or its Bearer token in the JWT form.
func upstreamCredentials(up *clickhouse.Upstream) (user, password string, err error) {
	h := up.Header.Get("Authorization")
	scheme, rest, _ := strings.Cut(h, " ")
	switch {
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", "", errors.New("the upstream mode's credentials are malformed")
		}
		u, p, _ := strings.Cut(string(raw), ":")
		return u, p, nil
	case strings.EqualFold(scheme, "Bearer"):
		return jwtMarker, rest, nil
	}
	return "", "", errors.New("the upstream mode gives no credentials the native protocol can carry")
}

func readServerHello(s source, sent int) (proto.ServerHello, error) {
	var h proto.ServerHello
	var err error
	if h.Name, err = readString(s, maxHelloText, "the server name"); err != nil {
		return h, err
	}
	var major, minor, rev uint64
	for _, f := range []*uint64{&major, &minor, &rev} {
		if *f, err = readUVarInt(s); err != nil {
			return h, err
		}
	}
	h.Major, h.Minor, h.Revision = int(major), int(minor), int(rev)
	v := min(sent, h.Revision)
	if proto.FeatureTimezone.In(v) {
		if h.Timezone, err = readString(s, maxHelloText, "the time zone"); err != nil {
			return h, err
		}
	}
	if proto.FeatureDisplayName.In(v) {
		if h.DisplayName, err = readString(s, maxHelloText, "the display name"); err != nil {
			return h, err
		}
	}
	if proto.FeatureVersionPatch.In(v) {
		p, err := readUVarInt(s)
		if err != nil {
			return h, err
		}
		h.Patch = int(p)
	}
	return h, nil
}

// dial connects to the next node that answers.
func (c *conn) dial() error {
	o := c.s.o
	var errs []error
	start := int(c.s.next.Add(1))
	for i := range o.Nodes {
		n := o.Nodes[(start+i)%len(o.Nodes)]
		ctx, cancel := context.WithTimeout(c.ctx, o.ConnectTimeout)
		nc, err := o.Dial(ctx, "tcp", n.Addr)
		if err == nil && n.TLS {
			cfg := o.TLS.Clone()
			if cfg == nil {
				cfg = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			if cfg.ServerName == "" {
				cfg.ServerName, _, _ = net.SplitHostPort(n.Addr)
			}
			tc := tls.Client(nc, cfg)
			if err = tc.HandshakeContext(ctx); err != nil {
				nc.Close()
			} else {
				nc = tc
			}
		}
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Addr, err))
			continue
		}
		c.s.dials.Add(1)
		c.mu.Lock()
		closed := c.closed
		c.up = nc
		c.mu.Unlock()
		if closed {
			nc.Close()
			return net.ErrClosed
		}
		c.ur = bufio.NewReaderSize(nc, bufferSize)
		c.uw = bufio.NewWriterSize(nc, bufferSize)
		return nil
	}
	return errors.Join(errs...)
}

func (c *conn) writeUpstream(f func([]byte) []byte) error {
	if _, err := c.uw.Write(f(nil)); err != nil {
		return err
	}
	return c.uw.Flush()
}

// relayClient reads the client's packets until it closes.
func (c *conn) relayClient() error {
	for {
		// Between queries the client has IdleTimeout to send the next;
		// during one, as long as it runs.
		c.mu.Lock()
		idle := c.q == nil
		c.mu.Unlock()
		if idle && c.cr.Buffered() == 0 {
			_ = c.client.SetReadDeadline(time.Now().Add(c.s.o.IdleTimeout))
		} else {
			_ = c.client.SetReadDeadline(time.Time{})
		}
		code, err := readUVarInt(c.csrc)
		if err != nil {
			return err
		}
		switch proto.ClientCode(code) {
		case proto.ClientCodeQuery:
			err = c.query()
		case proto.ClientCodeData, clientCodeScalar:
			err = c.data(code)
		case proto.ClientCodeCancel:
			c.mu.Lock()
			if c.q != nil {
				c.q.cancelled = true
			}
			running := c.q != nil
			c.mu.Unlock()
			if running {
				err = c.writeUpstream(func(b []byte) []byte { return appendUVarInt(b, code) })
			}
		case proto.ClientCodePing:
			err = c.writeUpstream(func(b []byte) []byte { return appendUVarInt(b, code) })
		case proto.ClientTablesStatusRequest:
			err = c.tablesStatus()
		case clientCodeKeepAlive:
			// answered by no one; nothing goes on
		default:
			err = protocolError("the client packet %d is not relayed", code)
		}
		if errors.Is(err, errProtocol) { // what is wrong, to the client, before the connection closes
			_ = c.sendException(codeBadArguments, "BAD_ARGUMENTS", "clickgate: "+strings.TrimPrefix(err.Error(), errProtocol.Error()+": "))
		}
		if err != nil {
			return err
		}
		c.mu.Lock()
		end := c.draining && c.q == nil
		c.mu.Unlock()
		if end {
			return nil
		}
	}
}

// Client packets ch-go does not name.
const (
	clientCodeKeepAlive = 6
	clientCodeScalar    = 7
)

// maxTables bounds a TablesStatusRequest.
const maxTables = 1 << 12

func (c *conn) tablesStatus() error {
	n, err := readUVarInt(c.csrc)
	if err != nil {
		return err
	}
	if n > maxTables {
		return protocolError("a status request for %d tables", n)
	}
	b := appendUVarInt(appendUVarInt(nil, uint64(proto.ClientTablesStatusRequest)), n)
	for range 2 * n {
		s, err := readString(c.csrc, maxHelloText, "a table name")
		if err != nil {
			return err
		}
		b = appendString(b, s)
	}
	return c.writeUpstream(func(dst []byte) []byte { return append(dst, b...) })
}

// data relays a Data or Scalar packet: the block, parsed where it came
// (compressed or not, as the query said), goes on as one compressed
// frame of its own.
func (c *conn) data(code uint64) error {
	table, err := readString(c.csrc, maxNameBytes, "the table name")
	if err != nil {
		return err
	}
	block := &cappedBuffer{max: maxFrameSize}
	var src source
	var frames *frameSource
	if c.clientCompression.Load() {
		frames = &frameSource{raw: c.cr, tee: block}
		src = frames
	} else {
		c.csrc.tee = block
		src = c.csrc
	}
	bi, err := skipBlock(src, c.rev)
	c.csrc.tee = nil
	if err != nil {
		return err
	}
	if frames != nil && !frames.atBoundary() {
		return protocolError("a compressed block does not end where its frame does")
	}
	// The data of a refused query, which ClickHouse never saw, is
	// dropped. Data after a query ended goes on: a failed INSERT's server
	// reads the rest of its data before the next query.
	c.mu.Lock()
	skip := c.skipping
	c.mu.Unlock()
	if skip {
		return nil
	}
	out := appendString(appendUVarInt(make([]byte, 0, block.Len()+64), code), table)
	switch {
	case c.upstreamCompression.Load():
		out = writeFrame(out, block.Bytes())
	case bi.columns == 0 && bi.rows == 0: // the end of the data, written anew
		out = appendEmptyBlock(out, c.rev)
	default:
		return protocolError("data with a query that reads (external tables) is relayed only compressed; send it with compression on (clickhouse-client --compression 1)")
	}
	if _, err := c.uw.Write(out); err != nil {
		return err
	}
	if c.cr.Buffered() == 0 {
		return c.uw.Flush()
	}
	return nil
}

// query checks a Query packet and sends it on as clickgate writes it, or
// refuses it.
func (c *conn) query() error {
	q, err := readQuery(c.csrc, c.rev)
	if err != nil {
		if r := asRefusal(err); r != nil {
			_ = c.sendException(r.code, r.name, r.msg)
		}
		return err
	}
	c.clientCompression.Store(q.compression)
	c.mu.Lock()
	busy := c.q != nil
	c.mu.Unlock()
	if busy {
		return protocolError("a query arrived while another runs on this connection")
	}
	o := c.s.o
	ev := c.s.auditStart(c)
	ev.signedIn(c.res)
	refuse := func(err error) error {
		r := asRefusal(err)
		if r == nil {
			r = &refusal{code: clickhouse.CodeNetworkError, name: "NETWORK_ERROR", msg: "clickgate: " + err.Error()}
		}
		ev.refused(r)
		c.s.auditFinish(ev)
		c.s.m.queries.WithLabelValues("refused").Inc()
		c.mu.Lock()
		c.skipping = true
		c.mu.Unlock()
		if err := c.sendException(r.code, r.name, r.msg); err != nil {
			return err
		}
		if r.fatal {
			return r
		}
		return nil
	}
	// The token is checked again for each query (its verification is
	// cached): a connection lives no longer than its token, and a person
	// whose roles now map to another account reconnects.
	res, err := o.Auth.AuthenticateClient(c.ctx, authn.Client{Address: c.client.RemoteAddr().String(), UserAgent: c.helloVersion}, c.creds, Interface)
	if err == nil && res.Principal.User != c.res.Principal.User {
		err = fmt.Errorf("the token now names ClickHouse user %q, not %q", res.Principal.User, c.res.Principal.User)
	}
	if err != nil {
		return refuse(&refusal{code: clickhouse.CodeAuthenticationFailed, name: "AUTHENTICATION_FAILED", fatal: true,
			msg: "clickgate: " + err.Error() + "; connect again with a fresh token: clickhouse-client --password \"$(clickgate token)\""})
	}
	c.res = res
	ev.signedIn(res)
	if err := c.s.auditReady(); err != nil {
		return refuse(err)
	}
	release, err := o.Limits.Acquire(c.ctx, c.res.Principal.User, c.res.Principal.Roles, c.client.RemoteAddr().String())
	if err != nil {
		return refuse(err)
	}
	up, err := o.Mode.Upstream(c.ctx, &clickhouse.Caller{Token: c.creds.Token, Identity: c.res.Identity, Principal: c.res.Principal, EventID: ev.id()})
	if err != nil {
		release()
		return refuse(err)
	}
	if user, _, err := upstreamCredentials(up); err != nil || user != c.upstreamUser {
		release()
		return refuse(&refusal{code: clickhouse.CodeAuthenticationFailed, name: "AUTHENTICATION_FAILED", fatal: true,
			msg: fmt.Sprintf("clickgate: your ClickHouse account is now %s, not the one this connection signed in as; connect again", up.Account)})
	}
	ev.upstream(up)
	ev.statement(q.body)
	u, err := c.rewrite(q, up)
	if u != nil {
		ev.ids(u.id)
	}
	var packet []byte
	if err == nil {
		packet, err = u.encode(nil, c.rev)
	}
	if err != nil {
		release()
		return refuse(err)
	}
	ev.proxied()
	c.upstreamCompression.Store(u.compression)
	c.mu.Lock()
	c.skipping = false
	c.q = &inflight{ev: ev, release: release, done: make(chan struct{})}
	c.mu.Unlock()
	if _, err := c.uw.Write(packet); err != nil {
		return err
	}
	if c.cr.Buffered() == 0 {
		return c.uw.Flush()
	}
	return nil
}

// readKinds are the statements that take no data from the client but
// external tables.
var readKinds = map[string]bool{"SELECT": true, "SHOW": true, "DESCRIBE": true, "EXISTS": true, "EXPLAIN": true}

// identitySettings are never taken from a client: who the person is.
var identitySettings = []string{"user", "password", "quota_key", "profile"}

// rewrite applies what clickgate decides to a client's query.
func (c *conn) rewrite(q *query, up *clickhouse.Upstream) (*upstreamQuery, error) {
	o := c.s.o
	// A query that may take data from the client runs compressed, so
	// that each block of the client's goes to ClickHouse in a frame of its
	// own; reads keep the client's choice (their only data, the end of
	// the external tables, clickgate writes itself).
	u := &upstreamQuery{info: q.info, stage: q.stage, params: q.params, body: up.QueryPrefix + q.body,
		compression: q.compression || !readKinds[clickhouse.StatementKind(q.body)]}
	u.id = c.ns + q.id
	if q.id == "" {
		u.id = c.ns + clickhouse.NewQueryID()
	}
	if q.secret != "" {
		return u, &refusal{code: clickhouse.CodeAuthenticationFailed, name: "AUTHENTICATION_FAILED", msg: "clickgate: an inter-server secret is not relayed"}
	}
	if q.stage > 4 {
		return u, &refusal{code: codeBadArguments, name: "BAD_ARGUMENTS", msg: fmt.Sprintf("clickgate: query stage %d is unknown", q.stage)}
	}
	policy := clickhouse.PolicyFor(o.Settings, up)
	legacy := !proto.FeatureSettingsSerializedAsStrings.In(c.rev)
	for _, s := range q.settings {
		lower := strings.ToLower(s.name)
		fixed, isFixed := clickhouse.LookupSetting(o.Settings, lower)
		if !isFixed {
			fixed, isFixed = clickhouse.LookupSetting(up.Settings, lower)
		}
		switch {
		case len(lower) < 3:
			return u, &refusal{code: codeUnknownSetting, name: "UNKNOWN_SETTING", msg: fmt.Sprintf("clickgate: the setting %q is unknown", clip(s.name))}
		case slices.Contains(identitySettings, lower):
			return u, &refusal{code: clickhouse.CodeAccessDenied, name: "ACCESS_DENIED",
				msg: fmt.Sprintf("clickgate: the setting %s is clickgate's to decide, not the client's; leave it out", lower)}
		case lower == "replace_running_query" && !sameValue(s.value, "0"):
			return u, &refusal{code: clickhouse.CodeAccessDenied, name: "ACCESS_DENIED",
				msg: "clickgate: replace_running_query is not relayed over the native protocol; cancel the running query instead"}
		case isFixed:
			if !sameValue(s.value, fixed) {
				return u, &refusal{code: codeConstraint, name: "SETTING_CONSTRAINT_VIOLATION",
					msg: fmt.Sprintf("clickgate: the setting %s is fixed to %q by clickgate; leave it out", lower, clip(fixed))}
			}
			continue // clickgate sends its own
		case slices.Contains(policy.Fixed, lower) && !(lower == clickhouse.GuardedDialect && strings.EqualFold(strings.TrimSpace(s.value), "clickhouse")):
			return u, &refusal{code: codeConstraint, name: "SETTING_CONSTRAINT_VIOLATION",
				msg: fmt.Sprintf("clickgate: the setting %s would loosen settings fixed by clickgate; leave it out", lower)}
		case legacy && c.rev < minLegacyRevision:
			return u, &refusal{code: codeBadArguments, name: "BAD_ARGUMENTS",
				msg: "clickgate: this ClickHouse version is older than 18.16; clickgate relays no client settings to it"}
		}
		u.client = append(u.client, s)
	}
	if policy.Active() {
		if err := policy.Check([]byte(q.body)); err != nil {
			return u, err
		}
	}
	for _, set := range []map[string]string{o.Settings, up.Settings} {
		for _, k := range clickhouse.SettingsOrder(set) {
			if k == "quota_key" {
				continue // the client info carries it
			}
			u.fixed = append(u.fixed, setting{name: k, value: set[k]})
		}
	}
	u.quotaKey = up.Settings["quota_key"]
	u.info.osUser = c.res.Principal.User
	u.info.name = up.UserAgent(q.info.name)
	if q.info.name == "" && q.info.revision == 0 { // no client info was sent: the Hello's
		u.info.name = up.UserAgent(c.helloName)
		u.info.revision = uint64(c.rev)
	}
	return u, nil
}

// endQuery ends the query in flight, if any, with the server's exception
// (nil: none) and outcome. It reports whether a query ended, and whether
// the connection is to close after (a shutdown waited for the query).
func (c *conn) endQuery(ex *proto.Exception, outcome string) (ended, drain bool) {
	c.mu.Lock()
	q := c.q
	c.q = nil
	drain = c.draining
	cancelled := q != nil && q.cancelled
	c.mu.Unlock()
	if q == nil {
		return false, false
	}
	q.release()
	if ex != nil {
		q.ev.exception(int32(ex.Code))
		outcome = "failed"
	}
	if cancelled && outcome == "ok" {
		outcome = "cancelled"
	}
	q.ev.outcome(outcome)
	c.s.auditFinish(q.ev)
	c.s.m.queries.WithLabelValues(outcome).Inc()
	close(q.done)
	return true, drain
}

// cappedBuffer holds one client block, which clickgate sends on as one
// frame: at most max bytes.
type cappedBuffer struct {
	bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		return 0, protocolError("a data block is larger than the %d MiB clickgate relays in one piece; send smaller blocks (max_insert_block_size)", b.max>>20)
	}
	return b.Buffer.Write(p)
}
