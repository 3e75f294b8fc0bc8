package gateway

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/clickhouse"
)

// This file is the one place that decides what of a client's request
// reaches ClickHouse. Each channel through which ClickHouse takes identity
// or settings is handled here:
//
//   - path: only "/" (ClickHouse's query handler), compared on the raw path;
//     /ping is answered by clickgate; anything else is a local 404.
//   - method: GET, HEAD and POST.
//   - URL parameters: each name once (compared without case, after
//     decoding); credentials (user, password, quota_key) are taken out;
//     session_id and query_id are put in the person's namespace; fixed
//     settings from the client are dropped and clickgate's are appended
//     last, so they win over any spelling ClickHouse may take for the same
//     setting.
//   - headers: one Authorization, one X-ClickHouse-User and -Key, all taken
//     out with the other credentials; other X-ClickHouse-* headers only
//     Database and Format; anything else refused.
//   - body: SQL (any content type but multipart) is read as ClickHouse
//     reads it (the query parameter, a newline, the body) and refused when
//     it assigns a fixed setting or, on a shared account, KILLs; a
//     compressed body is accepted only as INSERT data; multipart forms
//     keep their files (external data) and lose nothing else: a field
//     without a file name is a setting to ClickHouse and is refused.

// badRequest is a refusal of a request's form, before anything is sent.
func badRequest(format string, args ...any) *clickhouse.Error {
	return &clickhouse.Error{Status: http.StatusBadRequest, Code: codeBadArguments, Name: "BAD_ARGUMENTS",
		Msg: "clickgate: " + fmt.Sprintf(format, args...)}
}

// codeBadArguments is ClickHouse's BAD_ARGUMENTS.
const codeBadArguments = 36

// param is one URL parameter, decoded.
type param struct{ name, value string }

// maxParams bounds the parameters of one request.
const maxParams = 1000

// parseParams decodes a raw query string as ClickHouse does ('&' only,
// '+' is a space) and refuses a name that appears twice, compared without
// case: ClickHouse versions differ in how they compare names.
func parseParams(raw string) ([]param, error) {
	if raw == "" {
		return nil, nil
	}
	parts := strings.Split(raw, "&")
	if len(parts) > maxParams {
		return nil, badRequest("more than %d URL parameters", maxParams)
	}
	ps := make([]param, 0, len(parts))
	seen := make(map[string]bool, len(parts))
	for _, part := range parts {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		name, err1 := url.QueryUnescape(k)
		value, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return nil, badRequest("a URL parameter is not validly percent-encoded")
		}
		lower := strings.ToLower(name)
		if seen[lower] {
			return nil, badRequest("the URL parameter %q appears more than once; send it once", clip(name))
		}
		seen[lower] = true
		ps = append(ps, param{name, value})
	}
	return ps, nil
}

func lookup(ps []param, name string) (string, bool) {
	for _, p := range ps {
		if strings.EqualFold(p.name, name) {
			return p.value, true
		}
	}
	return "", false
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// allowedClickHouseHeaders are the X-ClickHouse-* headers a client may
// send on (canonical form); the credential ones are taken out.
var allowedClickHouseHeaders = []string{"X-Clickhouse-Database", "X-Clickhouse-Format"}

// clientCredentialHeaders are removed from every request: ClickHouse
// must see only the credentials of the upstream mode. X-Id-Token is
// Grafana's forwarded ID token, a credential too; Forwarded and
// X-Real-Ip could name another client address.
var clientCredentialHeaders = []string{
	"Authorization", "Proxy-Authorization", "X-Clickhouse-User", "X-Clickhouse-Key",
	"X-Clickhouse-Quota", "X-Id-Token", "Cookie", "Forwarded", "X-Real-Ip",
}

// credentials finds the token where ClickHouse clients put a password —
// Authorization (Bearer, or Basic with the token as password), the
// X-ClickHouse-User/Key headers, or the user/password parameters — and
// refuses requests that put credentials in more than one place or name
// two users: which one ClickHouse would take is not clickgate's to guess.
func credentials(r *http.Request, ps []param) (authn.Credentials, error) {
	for _, h := range []string{"Authorization", "X-Clickhouse-User", "X-Clickhouse-Key"} {
		if len(r.Header.Values(h)) > 1 {
			return authn.Credentials{}, badRequest("the header %s appears more than once; send it once", h)
		}
	}
	var found []authn.Credentials
	if r.Header.Get("Authorization") != "" {
		c, err := authn.FromRequest(r)
		if err != nil {
			return c, err
		}
		found = append(found, c)
	}
	if key := r.Header.Get("X-Clickhouse-Key"); key != "" {
		found = append(found, authn.Credentials{Token: key})
	}
	if pw, _ := lookup(ps, "password"); pw != "" {
		found = append(found, authn.Credentials{Token: pw})
	}
	switch len(found) {
	case 0:
		return authn.Credentials{}, authn.ErrNoCredentials
	case 1:
	default:
		return authn.Credentials{}, badRequest("credentials arrived in more than one place (Authorization, X-ClickHouse-Key, password); send one")
	}
	c := found[0]
	user, _ := lookup(ps, "user")
	for _, u := range []string{r.Header.Get("X-Clickhouse-User"), user} {
		switch {
		case u == "":
		case c.User == "":
			c.User = u
		case c.User != u:
			return authn.Credentials{}, badRequest("two different user names arrived (Authorization, X-ClickHouse-User, user); send one")
		}
	}
	return c, nil
}

// checkHeaders refuses X-ClickHouse-* headers that are neither
// credentials nor on the allowed list: ClickHouse reads identity from
// such headers, and new versions may read more.
func checkHeaders(h http.Header) error {
	for name := range h {
		canon := http.CanonicalHeaderKey(name)
		if !strings.HasPrefix(canon, "X-Clickhouse-") || slices.Contains(allowedClickHouseHeaders, canon) || slices.Contains(clientCredentialHeaders, canon) {
			continue
		}
		return badRequest("the header %s is not passed to ClickHouse; leave it out", clip(canon))
	}
	if len(h.Values("Content-Type")) > 1 || len(h.Values("Content-Encoding")) > 1 {
		return badRequest("Content-Type and Content-Encoding may appear once each")
	}
	return nil
}

// urlRefused are parameters refused while the policy guards them (the
// check of the SQL would be bypassed), with why.
var urlRefused = map[string]string{
	"allow_settings_after_format_in_insert": "allow_settings_after_format_in_insert would let INSERT data set fixed settings; leave it out",
	clickhouse.GuardedDialect:               "queries in another dialect cannot be checked by clickgate here; leave dialect out",
}

// identityParams are the client's credentials and quota key: never sent on.
var identityParams = []string{"user", "password", "quota_key"}

// rewriteParams returns the upstream query string: the client's
// parameters in their order less credentials and fixed settings, session
// and query ids in the person's namespace, then the fixed settings
// (readonly last: ClickHouse 18.16 applies URL settings one by one and
// refuses any after readonly = 1), then the mode's settings.
func (g *Gateway) rewriteParams(out *outbound, ps []param, fixed, mode map[string]string, policy clickhouse.TextPolicy) error {
	ns := out.namespace
	var b strings.Builder
	add := func(name, value string) {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(name))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(value))
	}
	for _, p := range ps {
		lower := strings.ToLower(p.name)
		switch {
		case slices.Contains(identityParams, lower), isFixed(fixed, lower), isFixed(mode, lower):
			// taken out; clickgate's own are added below
		case urlRefused[lower] != "" && slices.Contains(policy.Fixed, lower) && !(lower == clickhouse.GuardedDialect && strings.EqualFold(p.value, "clickhouse")):
			return badRequest("%s", urlRefused[lower])
		case lower == "session_id":
			out.sessionID = ns + p.value
			add("session_id", out.sessionID)
		case lower == "query_id":
			out.queryID = ns + p.value
			add("query_id", out.queryID)
		default:
			add(p.name, p.value)
		}
	}
	if out.queryID == "" {
		out.queryID = ns + clickhouse.NewQueryID()
		add("query_id", out.queryID)
	}
	for _, set := range []map[string]string{fixed, mode} {
		for _, k := range clickhouse.SettingsOrder(set) {
			add(k, set[k])
		}
	}
	out.rawQuery = b.String()
	return nil
}

// isMultipart mirrors ClickHouse, which takes a body as a form when its
// Content-Type starts with multipart/form-data; anything that mentions
// multipart is treated as a form here, so no spelling slips past as SQL.
func isMultipart(r *http.Request) bool {
	return strings.Contains(strings.ToLower(r.Header.Get("Content-Type")), "multipart")
}

// compressed reports a body ClickHouse decompresses before reading.
func compressed(r *http.Request, ps []param) bool {
	_, decompress := lookup(ps, "decompress")
	return r.Header.Get("Content-Encoding") != "" || decompress
}

func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// checkBody applies p to the SQL that ClickHouse will read from the query
// parameter and the body, and returns that SQL (as far as it was read)
// when p is active or wantText asks for it (the audit).
func checkBody(r *http.Request, ps []param, p clickhouse.TextPolicy, wantText bool) ([]byte, error) {
	if isMultipart(r) {
		if err := filterMultipart(r); err != nil {
			return nil, err
		}
	}
	query, hasQuery := lookup(ps, "query")
	if !p.Active() && !wantText {
		return nil, nil
	}
	if isMultipart(r) || !hasBody(r) || (!p.Active() && compressed(r, ps)) {
		return []byte(query), check(p, []byte(query))
	}
	if compressed(r, ps) {
		return []byte(query), checkCompressed(r, ps, query, hasQuery, p)
	}
	return checkStart(r, query, hasQuery, p, func(raw []byte, whole bool) ([]byte, bool) {
		return raw[:min(len(raw), clickhouse.MaxCheckedText)], whole
	}, "the query text is longer than %d KiB, more than clickgate checks; shorten it or send large data as an INSERT")
}

// check is p.Check, skipped when p refuses nothing.
func check(p clickhouse.TextPolicy, text []byte) error {
	if !p.Active() {
		return nil
	}
	return p.Check(text)
}

// checkStart reads the start of the body, as little as the check needs:
// the whole body when it is short, else as far as an INSERT's data is
// seen to begin, which then streams on unread. open turns the bytes read
// into the text ClickHouse reads (decompressing them) and says whether
// that is all of the body. It returns the text read.
func checkStart(r *http.Request, query string, hasQuery bool, p clickhouse.TextPolicy, open func(raw []byte, whole bool) ([]byte, bool), tooLong string) ([]byte, error) {
	if mem, ok := r.Body.(*memoryBody); ok { // bufferSmallBody read it all
		body, _ := open(mem.data, true)
		text := queryText(query, hasQuery, body)
		return text, check(p, text)
	}
	// Read in steps into a buffer that grows only as far as needed, then
	// send what was read ahead of the rest.
	rest := r.Body
	var buf []byte
	defer func() { r.Body = readCloser{io.MultiReader(bytes.NewReader(buf), rest), rest} }()
	eof := false
	for n := 4 << 10; ; n *= 4 {
		n = min(n, clickhouse.MaxCheckedText+1)
		if !eof {
			buf = slices.Grow(buf, n-len(buf))
			m, err := io.ReadFull(rest, buf[len(buf):n])
			buf = buf[:len(buf)+m]
			switch {
			case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
				eof = true
			case err != nil:
				return nil, badRequest("reading the request body: %v", err)
			}
		}
		body, whole := open(buf, eof)
		text := queryText(query, hasQuery, body)
		if whole || clickhouse.DataFollows(text, false) {
			return text, check(p, text)
		}
		if n > clickhouse.MaxCheckedText {
			if !p.Active() {
				return text, nil // read for the audit only: ClickHouse judges its length
			}
			return nil, badRequest(tooLong, clickhouse.MaxCheckedText>>10)
		}
	}
}

// queryText is what ClickHouse parses: the query parameter, a newline and
// the body.
func queryText(query string, hasQuery bool, body []byte) []byte {
	if !hasQuery {
		return body
	}
	return append(append(append(make([]byte, 0, len(query)+1+len(body)), query...), '\n'), body...)
}

// decoders open the Content-Encodings whose start clickgate reads: the
// ones every ClickHouse client can send.
var decoders = map[string]func(io.Reader) (io.Reader, error){
	"gzip":    func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) },
	"deflate": func(r io.Reader) (io.Reader, error) { return zlib.NewReader(r) },
}

// checkCompressed checks a compressed body, which ClickHouse decompresses
// and reads after the query parameter and a newline. Only an INSERT's
// data may be compressed, so the parameter must reach the data. While
// settings are fixed, the data's first token must be seen too (ClickHouse
// 19.1 to 22.3 read a SETTINGS clause there): a gzip or deflate body is
// opened as far as that; other compression is refused.
func checkCompressed(r *http.Request, ps []param, query string, hasQuery bool, p clickhouse.TextPolicy) error {
	if !hasQuery || !clickhouse.DataFollows([]byte(query+"\n"), true) {
		return badRequest("a compressed body is accepted only as the data of an INSERT whose query (ending in FORMAT <name> or VALUES) is in the query parameter; send other queries uncompressed")
	}
	if err := p.Check([]byte(query)); err != nil || len(p.Fixed) == 0 {
		return err // KILL cannot hide in an INSERT's data
	}
	_, native := lookup(ps, "decompress")
	decode := decoders[strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))]
	if native || decode == nil {
		return badRequest("with settings fixed by clickgate, a compressed INSERT body must use Content-Encoding gzip or deflate (not decompress=1 or other encodings), for clickgate to see where its data begins; or send it uncompressed")
	}
	_, err := checkStart(r, query, true, p, func(raw []byte, whole bool) ([]byte, bool) {
		plain, complete := decodePrefix(decode, raw)
		return plain, complete && whole
	}, "clickgate could not see where the compressed INSERT's data begins within %d KiB; send it uncompressed")
	return err
}

// decodePrefix decompresses what it can of raw, the start of a body, up
// to MaxCheckedText bytes, and says whether that was all of it.
func decodePrefix(decode func(io.Reader) (io.Reader, error), raw []byte) ([]byte, bool) {
	dec, err := decode(bytes.NewReader(raw))
	if err != nil {
		return nil, false
	}
	plain, err := io.ReadAll(io.LimitReader(dec, clickhouse.MaxCheckedText+1))
	return plain[:min(len(plain), clickhouse.MaxCheckedText)], err == nil && len(plain) <= clickhouse.MaxCheckedText
}

type readCloser struct {
	io.Reader
	io.Closer
}

// errFormField is a multipart field without a file name: ClickHouse
// would apply it as a setting or take it as the query.
type errFormField struct{ name string }

func (e *errFormField) Error() string {
	return fmt.Sprintf("the multipart field %q has no file name; ClickHouse would take it as a setting or the query, so clickgate refuses it: put settings and the query in the URL, and external data in file fields", clip(e.name))
}

// maxPartHeader bounds a multipart part's headers.
const maxPartHeader = 16 << 10

// filterMultipart re-encodes a multipart body as it streams: only file
// parts (external data) pass, each with a fresh boundary and only its
// name, file name and content type, so ClickHouse reads exactly the parts
// clickgate saw. A part without a file name ends the body with an error;
// ClickHouse reads the whole form before it runs a query, so it runs
// nothing, and the gateway answers 400.
func filterMultipart(r *http.Request) error {
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/form-data" || params["boundary"] == "" {
		return badRequest("a multipart body must be multipart/form-data with a boundary")
	}
	in := multipart.NewReader(r.Body, params["boundary"])
	pr, pw := io.Pipe()
	out := multipart.NewWriter(pw)
	go func() {
		err := copyFileParts(in, out)
		if err == nil {
			err = out.Close()
		}
		pw.CloseWithError(err)
	}()
	r.Body = readCloser{pr, closers{pr, r.Body}}
	r.Header.Set("Content-Type", out.FormDataContentType())
	r.Header.Del("Content-Length")
	r.ContentLength = -1
	return nil
}

func copyFileParts(in *multipart.Reader, out *multipart.Writer) error {
	for {
		part, err := in.NextRawPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return badRequest("the multipart body is malformed: %v", err)
		}
		if part.FileName() == "" {
			return badRequest("%s", (&errFormField{part.FormName()}).Error())
		}
		h := make(map[string][]string)
		h["Content-Disposition"] = []string{mime.FormatMediaType("form-data", map[string]string{"name": part.FormName(), "filename": part.FileName()})}
		if ct := part.Header.Get("Content-Type"); ct != "" && len(ct) < maxPartHeader {
			h["Content-Type"] = []string{ct}
		}
		w, err := out.CreatePart(h)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, part); err != nil {
			return err
		}
	}
}

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// stripNamespace gives the client back the query id it knows.
func stripNamespace(h http.Header, ns string) {
	if id := h.Get("X-Clickhouse-Query-Id"); strings.HasPrefix(id, ns) {
		h.Set("X-Clickhouse-Query-Id", strings.TrimPrefix(id, ns))
	}
}

func isFixed(set map[string]string, name string) bool {
	_, ok := clickhouse.LookupSetting(set, name)
	return ok
}
