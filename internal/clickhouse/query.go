package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/clickgate/clickgate/internal/chdb"
	"github.com/clickgate/clickgate/internal/chhttp"
)

// Querier sends clickgate's own queries for a caller (MCP tools): the
// mode's credentials and query prefix, clickgate's fixed settings, then
// the call's settings, which may not override the fixed ones.
type Querier struct {
	Target *url.URL
	HTTP   *http.Client
	// Fixed are clickhouse.settings, applied to every query.
	Fixed map[string]string
	// Engine, when set, runs the queries in-process instead of at Target.
	Engine Engine
}

// Engine is ClickHouse inside clickgate (clickhouse.url chdb://…, package
// chdb).
type Engine interface {
	Query(ctx context.Context, sql, format string, s chdb.Settings) (io.ReadCloser, error)
}

// Query runs sql as up and returns ClickHouse's streamed answer and its
// headers; a non-200 answer is returned as *Exception with ClickHouse's
// message. The caller closes the body; cancelling ctx cancels the query.
func (q *Querier) Query(ctx context.Context, up *Upstream, sql string, settings url.Values) (io.ReadCloser, http.Header, error) {
	if err := PolicyFor(q.Fixed, up).Check([]byte(sql)); err != nil {
		return nil, nil, err
	}
	params := url.Values{}
	for k, v := range settings {
		params[k] = v
	}
	for k, v := range q.Fixed {
		params.Set(k, v)
	}
	for k, v := range up.Settings {
		params.Set(k, v)
	}
	if q.Engine != nil {
		body, err := q.queryEngine(ctx, up.QueryPrefix+sql, params)
		return body, nil, err
	}
	header := up.Header
	if up.Person != "" {
		header = header.Clone()
		if header == nil {
			header = http.Header{}
		}
		header.Set("User-Agent", up.UserAgent("clickgate-mcp"))
	}
	target := &chhttp.Client{URL: q.Target, HTTP: q.HTTP}
	body, header, err := target.Open(ctx, up.QueryPrefix+sql, params, header)
	if _, ok := err.(*Exception); err != nil && !ok {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("clickhouse: unreachable: %w", err)
	}
	return body, header, err
}

// queryEngine runs sql on the engine with the parameters the HTTP
// interface would have had: default_format is the output format
// (TabSeparated when absent, as there), readonly the session's readonly
// level, the rest settings. ClickHouse's refusals come back as *Exception,
// whether the query fails at once or while its result streams.
func (q *Querier) queryEngine(ctx context.Context, sql string, params url.Values) (io.ReadCloser, error) {
	format := "TabSeparated"
	s := chdb.Settings{Values: map[string]string{}}
	for k, v := range params {
		switch val := v[len(v)-1]; k {
		case "default_format":
			format = val
		case "readonly":
			n, err := strconv.Atoi(val)
			if err != nil {
				return nil, fmt.Errorf("clickhouse: readonly %q is not a number", val)
			}
			s.Readonly = n
		default:
			s.Values[k] = val
		}
	}
	body, err := q.Engine.Query(ctx, sql, format, s)
	if err != nil {
		return nil, engineError(err)
	}
	return engineBody{body}, nil
}

type engineBody struct{ io.ReadCloser }

func (b engineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	return n, engineError(err)
}

func engineError(err error) error {
	if ce, ok := errors.AsType[*chdb.Error](err); ok {
		return &Exception{Code: ce.Code, Message: ce.Message}
	}
	return err
}
