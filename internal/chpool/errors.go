package chpool

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// ClickHouse error codes of the pool's errors.
const (
	CodeNetworkError    = 210 // NETWORK_ERROR: no node reachable, a node unreachable or failing
	CodeTimeoutExceeded = 159 // TIMEOUT_EXCEEDED: a node did not answer within response_timeout
	CodeSessionNotFound = 372 // SESSION_NOT_FOUND: the node of a session is unreachable
)

// Error is a request the pool could not get answered, with what a
// ClickHouse client should see. The gateway writes it as a ClickHouse
// exception: HTTP Status, X-ClickHouse-Exception-Code: Code, and the body
// "Code: <Code>. DB::Exception: <Msg>".
//
//	no node up                    503  210 NETWORK_ERROR     clickgate: no ClickHouse node is reachable (3 of 3 down)
//	node unreachable, no retry    502  210 NETWORK_ERROR     clickgate: ClickHouse node h:p is unreachable: dial tcp …
//	no response headers in time   504  159 TIMEOUT_EXCEEDED  clickgate: ClickHouse node h:p did not answer within clickhouse.response_timeout = 5m
//	session's node unreachable    502  372 SESSION_NOT_FOUND clickgate: the ClickHouse session S was on node h:p, which is unreachable; the session is lost, start a new one
//	other failure after writing   502  210 NETWORK_ERROR     clickgate: ClickHouse node h:p failed: …
//
// A request whose own context ended fails with the transport's error, not
// an *Error.
type Error struct {
	Status int    // HTTP status for the client
	Code   int    // ClickHouse error code
	Name   string // ClickHouse error name, e.g. NETWORK_ERROR
	Node   string // host:port of the node concerned; empty when none
	Msg    string // the message, starting with "clickgate: "
	Err    error  // the underlying error, if any
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

func noNodeError(down, total int) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeNetworkError, Name: "NETWORK_ERROR",
		Msg: fmt.Sprintf("clickgate: no ClickHouse node is reachable (%d of %d down)", down, total)}
}

func unreachableError(n *node, err error) *Error {
	return &Error{Status: http.StatusBadGateway, Code: CodeNetworkError, Name: "NETWORK_ERROR", Node: n.host, Err: err,
		Msg: fmt.Sprintf("clickgate: ClickHouse node %s is unreachable: %v", n.host, err)}
}

func timeoutError(n *node, d string, err error) *Error {
	return &Error{Status: http.StatusGatewayTimeout, Code: CodeTimeoutExceeded, Name: "TIMEOUT_EXCEEDED", Node: n.host, Err: err,
		Msg: fmt.Sprintf("clickgate: ClickHouse node %s did not answer within clickhouse.response_timeout = %s", n.host, d)}
}

func sessionLostError(id string, n *node, err error) *Error {
	return &Error{Status: http.StatusBadGateway, Code: CodeSessionNotFound, Name: "SESSION_NOT_FOUND", Node: n.host, Err: err,
		Msg: fmt.Sprintf("clickgate: the ClickHouse session %s was on node %s, which is unreachable; the session is lost, start a new one", quoteID(id), n.host)}
}

// quoteID quotes a session id unless it is plain.
func quoteID(id string) string {
	if len(id) > 128 {
		return strconv.Quote(id[:128]) + "…"
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:", r)) {
			return strconv.Quote(id)
		}
	}
	return id
}

func failedError(n *node, err error) *Error {
	return &Error{Status: http.StatusBadGateway, Code: CodeNetworkError, Name: "NETWORK_ERROR", Node: n.host, Err: err,
		Msg: fmt.Sprintf("clickgate: ClickHouse node %s failed: %v", n.host, err)}
}
