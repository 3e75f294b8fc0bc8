// Package clickhouse knows how clickgate reaches ClickHouse: the upstream
// modes that turn a principal into ClickHouse credentials, the SQL that
// provisions users, and the queries clickgate sends for a caller. The
// HTTP client is package chhttp's.
package clickhouse

import "github.com/clickgate/clickgate/internal/chhttp"

// Client runs statements as one ClickHouse account over HTTP (the service
// account's client).
type Client = chhttp.Client

// Exception is an error ClickHouse reported.
type Exception = chhttp.Exception

// Version is a ClickHouse server version.
type Version = chhttp.Version

// ParseVersion reads "25.8.2.1" style versions.
func ParseVersion(s string) (Version, error) { return chhttp.ParseVersion(s) }

// Error codes clickgate interprets.
const (
	CodeUnknownRole = 511
	CodeUnknownUser = 192
)
