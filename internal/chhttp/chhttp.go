// Package chhttp is clickgate's one client of the ClickHouse HTTP
// interface: it sends SQL as one account (Basic credentials, or a bearer
// token for clickgate's own gateway) and returns ClickHouse's answer, or
// the exception ClickHouse reported. The upstream modes
// (internal/clickhouse), the demo and the test harness use it; it imports
// nothing of clickgate's.
package chhttp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// Client sends SQL to one ClickHouse HTTP interface.
type Client struct {
	URL *url.URL
	// User and Password are sent as Basic credentials when User is set.
	User     string
	Password string
	// Bearer, when set, is sent as Authorization: Bearer instead.
	Bearer string
	// HTTP sends the requests; http.DefaultClient when nil.
	HTTP *http.Client
	// MaxAnswer bounds the bytes Query and Exec read from an answer; a
	// longer one is an error, not a cut result. DefaultMaxAnswer when 0.
	MaxAnswer int64

	mu      sync.Mutex
	version *Version // known once a query for it succeeded
}

// DefaultMaxAnswer bounds answers to clickgate's own statements.
const DefaultMaxAnswer = 1 << 20

// maxExceptionBytes bounds the part of a refusal read for its message.
const maxExceptionBytes = 64 << 10

// Exception is an error ClickHouse reported.
type Exception struct {
	Status  int // HTTP status; 0 when not from HTTP (the embedded engine)
	Code    int // ClickHouse's error code; 0 when it did not say
	Message string
}

func (e *Exception) Error() string { return "clickhouse: " + e.Message }

// Open sends sql and returns ClickHouse's streamed answer and its headers;
// the caller closes the body, and cancelling ctx cancels the query. params,
// when not nil, are the query string (settings, default_format, query_id,
// …), replacing c.URL's; header is added to the request. An answer other
// than 200 is an *Exception with ClickHouse's message; an error of the HTTP
// client (ClickHouse unreachable, ctx ended) is returned as it is, for the
// caller to word.
func (c *Client) Open(ctx context.Context, sql string, params url.Values, header http.Header) (io.ReadCloser, http.Header, error) {
	u := *c.URL
	if params != nil {
		u.RawQuery = params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(sql))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	switch {
	case c.Bearer != "":
		req.Header.Set("Authorization", "Bearer "+c.Bearer)
	case c.User != "":
		req.SetBasicAuth(c.User, c.Password)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxExceptionBytes))
		return nil, nil, parseException(resp, body)
	}
	return resp.Body, resp.Header, nil
}

// Query is Open that reads the whole answer (up to MaxAnswer bytes).
func (c *Client) Query(ctx context.Context, sql string, params url.Values) (string, error) {
	body, _, err := c.Open(ctx, sql, params, nil)
	if err != nil {
		return "", err
	}
	defer body.Close()
	limit := c.MaxAnswer
	if limit == 0 {
		limit = DefaultMaxAnswer
	}
	out, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return "", fmt.Errorf("reading answer: %w", err)
	}
	if int64(len(out)) > limit {
		return "", fmt.Errorf("the answer is larger than %d bytes, more than this client reads", limit)
	}
	return string(out), nil
}

// Exec runs sql and returns ClickHouse's answer; an error that is not an
// *Exception says "clickhouse:" first.
func (c *Client) Exec(ctx context.Context, sql string) (string, error) {
	out, err := c.Query(ctx, sql, nil)
	if _, ok := err.(*Exception); err != nil && !ok {
		return "", fmt.Errorf("clickhouse: %w", err)
	}
	return out, err
}

func parseException(resp *http.Response, body []byte) *Exception {
	msg := strings.TrimSpace(string(body))
	code, _ := strconv.Atoi(resp.Header.Get("X-ClickHouse-Exception-Code"))
	if code == 0 {
		// "Code: 516. DB::Exception: …", or "Code: 164, e.displayText() = …" (18.16)
		if rest, ok := strings.CutPrefix(msg, "Code: "); ok {
			end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
			if end > 0 {
				code, _ = strconv.Atoi(rest[:end])
			}
		}
	}
	return &Exception{Status: resp.StatusCode, Code: code, Message: msg}
}

// Version is a ClickHouse server version.
type Version struct {
	Major, Minor int
	Raw          string
}

// AtLeast reports whether v is major.minor or newer.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// ParseVersion reads "25.8.2.1" style versions.
func ParseVersion(s string) (Version, error) {
	s = strings.TrimSpace(s)
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return Version{}, fmt.Errorf("clickhouse: version %q is not major.minor", s)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return Version{}, fmt.Errorf("clickhouse: version %q is not major.minor", s)
	}
	return Version{Major: major, Minor: minor, Raw: s}, nil
}

// Version asks the server until it answers, then remembers the answer.
func (c *Client) Version(ctx context.Context) (Version, error) {
	c.mu.Lock()
	known := c.version
	c.mu.Unlock()
	if known != nil {
		return *known, nil
	}
	out, err := c.Exec(ctx, "SELECT version()")
	if err != nil {
		return Version{}, err
	}
	v, err := ParseVersion(out)
	if err != nil {
		return Version{}, err
	}
	c.mu.Lock()
	c.version = &v
	c.mu.Unlock()
	return v, nil
}
