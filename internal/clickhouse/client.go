// Package clickhouse knows how clickgate reaches ClickHouse: the upstream
// modes that turn a principal into ClickHouse credentials, the SQL that
// provisions users, and a small client for the service account.
package clickhouse

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

// Client runs statements as one ClickHouse account over HTTP.
type Client struct {
	URL      *url.URL
	User     string
	Password string
	HTTP     *http.Client

	mu      sync.Mutex
	version *Version // known once a query for it succeeded
}

// Exception is an error ClickHouse reported.
type Exception struct {
	Code    int
	Message string
}

func (e *Exception) Error() string { return "clickhouse: " + e.Message }

// Error codes clickgate interprets.
const (
	CodeUnknownRole = 511
	CodeUnknownUser = 192
)

// maxAnswerBytes bounds answers to clickgate's own statements.
const maxAnswerBytes = 1 << 20

// Exec runs sql and returns ClickHouse's answer.
func (c *Client) Exec(ctx context.Context, sql string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL.String(), strings.NewReader(sql))
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(c.User, c.Password)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("clickhouse: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return "", fmt.Errorf("clickhouse: reading answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", parseException(resp.Header, body)
	}
	return string(body), nil
}

func parseException(h http.Header, body []byte) *Exception {
	msg := strings.TrimSpace(string(body))
	code, _ := strconv.Atoi(h.Get("X-ClickHouse-Exception-Code"))
	if code == 0 {
		// "Code: 516. DB::Exception: …", or "Code: 164, e.displayText() = …" (18.16)
		if rest, ok := strings.CutPrefix(msg, "Code: "); ok {
			end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
			if end > 0 {
				code, _ = strconv.Atoi(rest[:end])
			}
		}
	}
	return &Exception{Code: code, Message: msg}
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
