package demo

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/clickgate/clickgate/internal/chhttp"
)

// Client sends SQL to a ClickHouse HTTP interface, directly or through
// clickgate's gateway, with chhttp's client.
type Client struct {
	URL string // base URL, e.g. http://127.0.0.1:8123
	// Account is sent as Basic credentials when User is set.
	Account Account
	// Bearer, when set, is sent as Authorization: Bearer instead.
	Bearer string
	HTTP   *http.Client
}

// QueryError is an answer other than 200.
type QueryError struct {
	Status  int
	Message string // ClickHouse's text, without the exception decoration
}

func (e *QueryError) Error() string { return e.Message }

// Query runs sql and returns the answer without its final newline.
func (c *Client) Query(ctx context.Context, sql string) (string, error) {
	return c.QueryParams(ctx, sql, nil)
}

// QueryParams is Query with URL parameters (database, settings).
func (c *Client) QueryParams(ctx context.Context, sql string, params url.Values) (string, error) {
	u, err := url.Parse(strings.TrimRight(c.URL, "/") + "/")
	if err != nil {
		return "", err
	}
	ch := &chhttp.Client{
		URL: u, User: c.Account.User, Password: c.Account.Password, Bearer: c.Bearer,
		HTTP: c.HTTP, MaxAnswer: 16 << 20,
	}
	out, err := ch.Query(ctx, sql, params)
	if ex, ok := err.(*chhttp.Exception); ok {
		return "", &QueryError{Status: ex.Status, Message: CleanMessage(ex.Message)}
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("%s: %w", c.URL, err)
	}
	return strings.TrimSuffix(out, "\n"), nil
}

var (
	decoration = regexp.MustCompile(`(?s)^Code: (\d+)[.,] (?:e\.displayText\(\) = )?DB::Exception: (.*?)(, e\.what\(\) = DB::Exception)?\s*$`)
	stackTrace = regexp.MustCompile(`(?s)[,.]?\s*Stack trace.*$`)
)

// CleanMessage turns ClickHouse's "Code: 291, e.displayText() =
// DB::Exception: Access denied …, e.what() = DB::Exception" into
// "Access denied … (code 291)".
func CleanMessage(s string) string {
	s = strings.TrimSpace(stackTrace.ReplaceAllString(s, ""))
	if m := decoration.FindStringSubmatch(s); m != nil {
		return m[2] + " (code " + m[1] + ")"
	}
	s = strings.TrimPrefix(s, "Code: ")
	return s
}
