package clickhouse

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Querier sends clickgate's own queries for a caller (MCP tools): the
// mode's credentials and query prefix, clickgate's fixed settings, then
// the call's settings, which may not override the fixed ones.
type Querier struct {
	Target *url.URL
	HTTP   *http.Client
	// Fixed are clickhouse.settings, applied to every query.
	Fixed map[string]string
}

// Query runs sql as up and returns ClickHouse's streamed answer and its
// headers; a non-200 answer is returned as *Exception with ClickHouse's
// message. The caller closes the body; cancelling ctx cancels the query.
func (q *Querier) Query(ctx context.Context, up *Upstream, sql string, settings url.Values) (io.ReadCloser, http.Header, error) {
	params := url.Values{}
	for k, v := range settings {
		params[k] = v
	}
	for k, v := range q.Fixed {
		params.Set(k, v)
	}
	for k, v := range up.Settings {
		params[k] = v
	}
	u := *q.Target
	u.RawQuery = params.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(up.QueryPrefix+sql))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range up.Header {
		req.Header[k] = v
	}
	resp, err := q.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("clickhouse: unreachable: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, nil, parseException(resp.Header, body)
	}
	return resp.Body, resp.Header, nil
}
