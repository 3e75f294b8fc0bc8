package mcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/clickhouse"
)

// TestToolErrorUnreachable: an agent never reads ClickHouse's address; the
// server log has the detail.
func TestToolErrorUnreachable(t *testing.T) {
	dial := &url.Error{Op: "Post", URL: "http://127.0.0.1:18123/?query=x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}}
	for _, err := range []error{
		fmt.Errorf("clickhouse: unreachable: %w", dial),
		fmt.Errorf("reading column types: %w", io.ErrUnexpectedEOF),
		&net.OpError{Op: "read", Net: "tcp", Err: errors.New("connection reset by peer")},
	} {
		var buf bytes.Buffer
		s := &Server{opt: Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))}}
		got := s.toolError(context.Background(), err)
		if got.Error() != "clickgate: ClickHouse is unreachable; try again later" {
			t.Errorf("%v: the agent reads %q", err, got)
		}
		if !strings.Contains(buf.String(), "mcp: ClickHouse unreachable") {
			t.Errorf("%v: log %q", err, buf.String())
		}
	}
	s := &Server{opt: Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	for _, err := range []error{
		&clickhouse.Exception{Code: 60, Message: "Code: 60. DB::Exception: Table default.x doesn't exist."},
		context.Canceled,
	} {
		if got := s.toolError(context.Background(), err); strings.Contains(got.Error(), "unreachable") {
			t.Errorf("%v: %q", err, got)
		}
	}
}
