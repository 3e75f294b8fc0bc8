//go:build linux

package mcp_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/bench/internal/benchkit"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/testkit"
)

// BenchmarkMCPInProcess is clickgate's MCP endpoint in the test process
// (server.New + httptest) in front of a fake ClickHouse that answers
// `SELECT 1` and streams a 1M-row TSV: no real ClickHouse, so that it runs
// everywhere and quickly, and so that -benchmem shows what one call
// allocates. Each call POSTs the very request the SDK client sends (its
// per-request _meta included) with net/http. B/op and allocs/op are the
// whole process's: the net/http client, clickgate and the fake ClickHouse;
// the "direct" sub-benchmark is the client and fake ClickHouse alone.
//
//	go test -run '^$' -bench 'MCPInProcess' -benchmem ./bench/mcp/
func BenchmarkMCPInProcess(b *testing.B) {
	fake, resource, tok := inProcess(b, "")

	client := newClient()
	ctx := context.Background()
	bigSQL := "SELECT number, toString(number) FROM system.numbers LIMIT 1000000"
	small := captureRunQuery(b, resource, tok, smallSQL)
	hundred := captureRunQuery(b, resource, tok, hundredSQL)
	big := captureRunQuery(b, resource, tok, bigSQL)

	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fake.URL+"/?default_format="+tsvFormat+"&max_execution_time=30&readonly=1", strings.NewReader(smallSQL))
			req.SetBasicAuth("ch_admin", "admin-pw")
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(out) != "1\nUInt8\n1\n" {
				b.Fatalf("fake ClickHouse: %q", out)
			}
		}
	})
	b.Run("run_query_SELECT_1", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out, err := postRaw(ctx, client, resource, small)
			if err != nil || !strings.Contains(string(out), `"row_count":1`) {
				b.Fatalf("%v %.300s", err, out)
			}
		}
	})
	b.Run("run_query_LIMIT_100", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out, err := postRaw(ctx, client, resource, hundred)
			if err != nil || !strings.Contains(string(out), `"row_count":100`) {
				b.Fatalf("%v %.300s", err, out)
			}
		}
	})
	b.Run("run_query_capped_1M_rows", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out, err := postRaw(ctx, client, resource, big)
			if err != nil || !strings.Contains(string(out), fmt.Sprintf(`"row_count":%d`, defaultMaxRows)) {
				b.Fatalf("%v %.300s", err, out)
			}
		}
	})
}

// inProcess starts clickgate in the test process in front of the fake
// ClickHouse, with extra configuration appended, and returns the fake,
// the MCP endpoint and a token for it.
func inProcess(b *testing.B, extra string) (fake *httptest.Server, resource, tok string) {
	fake = httptest.NewServer(http.HandlerFunc(fakeClickHouse))
	b.Cleanup(fake.Close)

	key := testkit.NewKey(b, jose.ES256, "k1")
	cg := httptest.NewUnstartedServer(nil)
	public := "http://" + cg.Listener.Addr().String()
	resource = public + "/mcp"
	yaml := fmt.Sprintf("server: {public_url: %s}\n", public) +
		benchkit.ClickgateConfig(testkit.WriteJWKS(b, b.TempDir(), key), fake.URL, benchkit.Account{Role: "admin", User: "ch_admin", Password: "admin-pw"}) + extra
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	cg.Config.Handler = srv.Handler()
	cg.Start()
	b.Cleanup(cg.Close)
	return fake, resource, key.Sign(b, testkit.Claims(benchkit.Issuer, resource, "bench-admin@example.com", "ch-admin"))
}

// BenchmarkMCPInProcessRaisedCaps is the 1M-row query with the caps
// raised (mcp.max_result_rows 1000000, max_result_bytes 1e9), so that the
// whole answer comes back: B/op is what one full 1M-row run_query costs.
//
//	go test -run '^$' -bench 'MCPInProcessRaisedCaps' -benchmem ./bench/mcp/
func BenchmarkMCPInProcessRaisedCaps(b *testing.B) {
	_, resource, tok := inProcess(b, "mcp: {max_result_rows: 1000000, max_result_bytes: 1000000000}\n")
	big := captureRunQuery(b, resource, tok, "SELECT number, toString(number) FROM system.numbers LIMIT 1000000")
	client := newClient()
	b.ReportAllocs()
	for b.Loop() {
		out, err := postRaw(context.Background(), client, resource, big)
		if err != nil || !strings.Contains(string(out), `"row_count":1000000`) {
			b.Fatalf("%v %.300s", err, out)
		}
	}
}

// hundredTSV is hundredSQL's answer.
var hundredTSV = sync.OnceValue(func() []byte {
	out := []byte("number\ttoString(number)\tmultiply(number, 2)\nUInt64\tString\tUInt64\n")
	for i := uint64(0); i < 100; i++ {
		out = fmt.Appendf(out, "%d\t%d\t%d\n", i, i, 2*i)
	}
	return out
})

// bigTSV is the big query's answer: a million rows, about 14 MB.
var bigTSV = sync.OnceValue(func() []byte {
	out := []byte("number\ttoString(number)\nUInt64\tString\n")
	for i := uint64(0); i < 1_000_000; i++ {
		out = strconv.AppendUint(out, i, 10)
		out = append(out, '\t')
		out = strconv.AppendUint(out, i, 10)
		out = append(out, '\n')
	}
	return out
})

// fakeClickHouse answers `SELECT 1` and streams the big query's million
// rows as TabSeparatedWithNamesAndTypes until the client goes away.
func fakeClickHouse(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ping" { // the health check, as ClickHouse answers it
		io.WriteString(w, "Ok.\n")
		return
	}
	sql, _ := io.ReadAll(r.Body)
	switch {
	case string(sql) == "SELECT version()": // clickgate asks once
		io.WriteString(w, "18.16.1\n")
	case string(sql) == hundredSQL:
		w.Write(hundredTSV())
	case string(sql) == smallSQL:
		io.WriteString(w, "1\nUInt8\n1\n")
	case strings.HasPrefix(string(sql), "SELECT number, toString(number) FROM system.numbers"):
		// Written in one piece: generating rows would cost the fake more
		// than clickgate reading them, since the write goes on until the
		// capped reader's connection is gone.
		w.Write(bigTSV())
	default:
		w.Header().Set("X-ClickHouse-Exception-Code", "62")
		http.Error(w, "Code: 62, e.displayText() = DB::Exception: the fake ClickHouse knows four queries", http.StatusInternalServerError)
	}
}
