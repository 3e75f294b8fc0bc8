package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/gateway"
	"github.com/clickgate/clickgate/internal/identity"
)

// The invariant of the trust boundary over generated requests, against an
// upstream that records what it receives: an unauthenticated request never
// reaches it; an authenticated one reaches it at "/" only, without the
// client's credentials, with every fixed and identity setting as clickgate
// set it and last, each parameter once, and session and query ids only in
// the caller's namespace. The authenticator knows one token; token
// verification itself is tested in internal/token.

const goodToken = "good-token-for-alice"

type oneTokenAuth struct{}

func (oneTokenAuth) Authenticate(_ context.Context, _ *http.Request, c authn.Credentials, _ string) (*authn.Result, error) {
	if c.Token != goodToken {
		return nil, errors.New("token: unknown")
	}
	if c.User != "" && c.User != "alice" {
		return nil, authn.ErrUserMismatch
	}
	return &authn.Result{Identity: &identity.Identity{Subject: "a"}, Principal: &identity.Principal{User: "alice", Subject: "a"}}, nil
}

// sharedMode is service mode without a server: one account, the person
// as quota key and log comment.
type sharedMode struct{}

func (sharedMode) Upstream(context.Context, *clickhouse.Caller) (*clickhouse.Upstream, error) {
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("svc:svc-pw")))
	return &clickhouse.Upstream{Header: h, Shared: true,
		Settings: map[string]string{"quota_key": "alice", "log_comment": `{"clickgate_user":"alice"}`}}, nil
}

var fixed = map[string]string{"readonly": "2", "max_result_rows": "100", "max_execution_time": "30"}

// recorder is the upstream: it reads each request whole and remembers it.
type recorder struct {
	mu   sync.Mutex
	seen []recorded
}

type recorded struct {
	req  *http.Request
	body []byte
	err  error
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	var err error
	if req.Body != nil {
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
	}
	r.mu.Lock()
	r.seen = append(r.seen, recorded{req, body, err})
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"X-Clickhouse-Query-Id": {req.URL.Query().Get("query_id")}},
		Body: io.NopCloser(strings.NewReader("ok\n")), Request: req}, nil
}

func (r *recorder) take() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.seen
	r.seen = nil
	return s
}

func newInvariantGateway() (*gateway.Gateway, *recorder) {
	rec := &recorder{}
	target, _ := url.Parse("http://clickhouse.invalid:8123")
	g := gateway.New(gateway.Options{Target: target, Auth: oneTokenAuth{}, Mode: sharedMode{}, Settings: fixed,
		Transport: rec, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return g, rec
}

// authenticated reports whether the request carries the good token in a
// place clickgate reads credentials from.
func authenticated(r *http.Request) bool {
	if strings.Contains(r.Header.Get("Authorization"), goodToken) || r.Header.Get("X-Clickhouse-Key") == goodToken {
		return true
	}
	u, _ := url.ParseQuery(r.URL.RawQuery)
	for k, v := range u {
		if strings.EqualFold(k, "password") && len(v) > 0 && v[0] == goodToken {
			return true
		}
	}
	return strings.Contains(r.Header.Get("Authorization"), base64.StdEncoding.EncodeToString([]byte(":"+goodToken))) ||
		strings.Contains(r.Header.Get("Authorization"), base64.StdEncoding.EncodeToString([]byte("alice:"+goodToken)))
}

func checkForwarded(t *testing.T, in *http.Request, seen []recorded) {
	t.Helper()
	if !authenticated(in) {
		if len(seen) > 0 {
			t.Fatalf("an unauthenticated request reached ClickHouse: %s %q", in.Method, in.URL.String())
		}
		return
	}
	for _, s := range seen {
		out := s.req
		if out.URL.Path != "/" || out.URL.RawPath != "" {
			t.Fatalf("forwarded to path %q", out.URL.EscapedPath())
		}
		if got := out.Header.Values("Authorization"); len(got) != 1 || !strings.HasPrefix(got[0], "Basic ") || strings.Contains(got[0], goodToken) {
			t.Fatalf("upstream Authorization %q is not the service account's", got)
		}
		for name := range out.Header {
			canon := http.CanonicalHeaderKey(name)
			if strings.HasPrefix(canon, "X-Clickhouse-") && canon != "X-Clickhouse-Database" && canon != "X-Clickhouse-Format" {
				t.Fatalf("header %s reached ClickHouse", canon)
			}
			if canon == "Cookie" || canon == "X-Id-Token" || canon == "Proxy-Authorization" || canon == "Forwarded" {
				t.Fatalf("header %s reached ClickHouse", canon)
			}
		}
		checkParams(t, out.URL.RawQuery)
		if ct := out.Header.Get("Content-Type"); strings.Contains(strings.ToLower(ct), "multipart") && s.err == nil {
			checkForm(t, ct, s.body)
		}
	}
}

// checkParams: each name once; no client credentials; identity and fixed
// settings as clickgate set them, after every client parameter; ids in
// alice's namespace.
func checkParams(t *testing.T, raw string) {
	t.Helper()
	h := sha256.Sum256([]byte("alice"))
	ns := "cg" + hex.EncodeToString(h[:8]) + "_"
	names := map[string]bool{}
	last := -1
	parts := strings.Split(raw, "&")
	for i, part := range parts {
		k, v, _ := strings.Cut(part, "=")
		name, err1 := url.QueryUnescape(k)
		value, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			t.Fatalf("forwarded an undecodable parameter %q", part)
		}
		lower := strings.ToLower(name)
		if names[lower] {
			t.Fatalf("parameter %q forwarded twice: %s", name, raw)
		}
		names[lower] = true
		switch lower {
		case "user", "password":
			t.Fatalf("client credential %q forwarded", name)
		case "session_id", "query_id":
			if !strings.HasPrefix(value, ns) {
				t.Fatalf("%s %q outside alice's namespace", name, value)
			}
		case "quota_key", "log_comment", "readonly", "max_result_rows", "max_execution_time":
			want := fixed[lower]
			if lower == "quota_key" {
				want = "alice"
			}
			if lower == "log_comment" {
				want = `{"clickgate_user":"alice"}`
			}
			if value != want || name != lower {
				t.Fatalf("%s=%q forwarded, want %s=%q", name, value, lower, want)
			}
			if last < 0 {
				last = i
			}
		case "allow_settings_after_format_in_insert":
			t.Fatalf("%s forwarded while settings are fixed", name)
		case "dialect":
			if !strings.EqualFold(value, "clickhouse") {
				t.Fatalf("dialect=%q forwarded: the SQL check reads ClickHouse SQL only", value)
			}
			if last >= 0 {
				t.Fatalf("client parameter %q after clickgate's settings", name)
			}
		default:
			if last >= 0 {
				t.Fatalf("client parameter %q after clickgate's settings", name)
			}
		}
	}
	for _, n := range []string{"quota_key", "log_comment", "readonly", "max_result_rows", "max_execution_time", "query_id"} {
		if !names[n] {
			t.Fatalf("%s missing upstream: %s", n, raw)
		}
	}
}

// checkForm: a forwarded form holds file parts only.
func checkForm(t *testing.T, contentType string, body []byte) {
	t.Helper()
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		t.Fatalf("forwarded Content-Type %q: %v", contentType, err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err != nil {
			return
		}
		if p.FileName() == "" {
			t.Fatalf("a form field without file name (%q) reached ClickHouse", p.FormName())
		}
	}
}

// FuzzGatewayInvariant drives generated requests through the gateway.
// Run it long: go test -run '^$' -fuzz FuzzGatewayInvariant ./internal/gateway/
func FuzzGatewayInvariant(f *testing.F) {
	seeds := []struct {
		method, path, query, headers, body string
		auth                               uint8
	}{
		{"POST", "/", "", "", "SELECT 1", 1},
		{"POST", "/ping", "query=DROP+TABLE+x", "", "DROP TABLE x", 0},
		{"GET", "/%70ing", "query=SELECT+1", "", "", 0},
		{"POST", "/", "readonly=0&max_result_rows=0&READONLY=1", "", "SELECT 1", 1},
		{"POST", "/", "session_id=&query_id=x&replace_running_query=1", "", "KILL QUERY WHERE 1", 1},
		{"POST", "/", "user=default&password=", "X-ClickHouse-User: default\nX-ClickHouse-Key: x", "SELECT 1", 2},
		{"POST", "/", "query=SELECT+1+SETTINGS", "Content-Type: application/x-www-form-urlencoded", "readonly=0", 1},
		{"POST", "/", "query=SELECT+1", "Content-Type: multipart/form-data; boundary=B", "--B\r\nContent-Disposition: form-data; name=\"readonly\"\r\n\r\n0\r\n--B--\r\n", 1},
		{"POST", "/", "query=SELECT+1", "Content-Type: multipart/form-data; boundary=B", "--B\r\nContent-Disposition: form-data; name=\"t\"; filename=\"t\"\r\n\r\n1\r\n--B--\r\n", 1},
		{"POST", "/", "decompress=1&query=INSERT+INTO+t+FORMAT+TSV", "Content-Encoding: gzip", "\x1f\x8b", 1},
		{"POST", "/", "quota_key=bob&log_comment=x&quer%79=1&query=2", "Cookie: a=b\nX-Id-Token: t", "", 3},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, s.headers, s.body, s.auth)
	}
	g, rec := newInvariantGateway()
	f.Fuzz(func(t *testing.T, method, path, query, headers, body string, auth uint8) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t?#") {
			return
		}
		req := httptest.NewRequest(http.MethodGet, "/", strings.NewReader(body))
		req.Method = method
		req.URL.Path, req.URL.RawPath = "", ""
		u, err := url.Parse("http://clickgate" + path)
		if err != nil {
			return
		}
		req.URL.Path, req.URL.RawPath = u.Path, u.RawPath
		req.URL.RawQuery = query
		req.RequestURI = ""
		req.ContentLength = int64(len(body))
		for _, line := range strings.Split(headers, "\n") {
			k, v, ok := strings.Cut(line, ": ")
			if ok && validHeader(k, v) {
				req.Header.Add(k, v)
			}
		}
		switch auth % 4 {
		case 1:
			req.Header.Add("Authorization", "Bearer "+goodToken)
		case 2:
			req.SetBasicAuth("alice", goodToken)
		case 3:
			req.Header.Add("X-ClickHouse-Key", goodToken)
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		checkForwarded(t, req, rec.take())
		// Every refusal is in ClickHouse's words, so its clients show it.
		if w.Code != http.StatusOK && (!strings.Contains(w.Body.String(), "DB::Exception") || w.Header().Get("X-Clickhouse-Exception-Code") == "") {
			t.Fatalf("%d without a ClickHouse-style exception: %q", w.Code, w.Body.String())
		}
	})
}

func validMethod(m string) bool {
	if m == "" || len(m) > 16 {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

func validHeader(k, v string) bool {
	if k == "" || len(k) > 64 || strings.EqualFold(k, "Content-Length") || strings.EqualFold(k, "Transfer-Encoding") || strings.EqualFold(k, "Host") {
		return false
	}
	for _, c := range k {
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return !strings.ContainsAny(v, "\r\n\x00")
}
