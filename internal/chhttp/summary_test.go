// An external test package: chtest imports chhttp.
package chhttp_test

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/url"
	"testing"

	"github.com/clickgate/clickgate/internal/chhttp"
	"github.com/clickgate/clickgate/internal/chtest"
)

func TestParseSummary(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   chhttp.Summary
		ok     bool
	}{
		// ClickHouse 26.7, as sent for SELECT number FROM numbers(1000).
		{`{"read_rows":"1000","read_bytes":"8000","written_rows":"0","written_bytes":"0","total_rows_to_read":"1000","result_rows":"1000","result_bytes":"8128","elapsed_ns":"39287674","memory_usage":"5661963"}`,
			chhttp.Summary{ReadRows: 1000, ReadBytes: 8000, TotalRowsToRead: 1000, ResultRows: 1000, ResultBytes: 8128}, true},
		// An older server's five keys: the rest is 0.
		{`{"read_rows":"1","read_bytes":"2","written_rows":"3","written_bytes":"4","total_rows_to_read":"5"}`,
			chhttp.Summary{ReadRows: 1, ReadBytes: 2, WrittenRows: 3, WrittenBytes: 4, TotalRowsToRead: 5}, true},
		{`{}`, chhttp.Summary{}, true},
		{` { "result_rows" : 7 , "result_bytes":"18446744073709551615" } `, chhttp.Summary{ResultRows: 7, ResultBytes: math.MaxUint64}, true},
		// Keys it does not know may hold anything, negative memory_usage too.
		{`{"written_rows":"2","memory_usage":"-5","x":{"y":[null]}}`, chhttp.Summary{WrittenRows: 2}, true},
		// A repeated key: the last one, as encoding/json.
		{`{"read_rows":"1","read_rows":"2"}`, chhttp.Summary{ReadRows: 2}, true},

		{``, chhttp.Summary{}, false},
		{`null`, chhttp.Summary{}, false},
		{`[]`, chhttp.Summary{}, false},
		{`"1"`, chhttp.Summary{}, false},
		{`{"read_rows":"1"`, chhttp.Summary{}, false},
		{`{"read_rows":"1"} {}`, chhttp.Summary{}, false},
		{`{"read_rows":"-1"}`, chhttp.Summary{}, false},
		{`{"read_rows":-1}`, chhttp.Summary{}, false},
		{`{"read_rows":"+1"}`, chhttp.Summary{}, false},
		{`{"read_rows":" 1"}`, chhttp.Summary{}, false},
		{`{"read_rows":""}`, chhttp.Summary{}, false},
		{`{"read_rows":null}`, chhttp.Summary{}, false},
		{`{"read_rows":"null"}`, chhttp.Summary{}, false},
		{`{"read_rows":true}`, chhttp.Summary{}, false},
		{`{"read_rows":"1.5"}`, chhttp.Summary{}, false},
		{`{"read_rows":1e3}`, chhttp.Summary{}, false},
		{`{"read_rows":"0x10"}`, chhttp.Summary{}, false},
		{`{"read_rows":"1_000"}`, chhttp.Summary{}, false},
		{`{"read_rows":"18446744073709551616"}`, chhttp.Summary{}, false},
		{`{"read_rows":"\u0031"}`, chhttp.Summary{ReadRows: 1}, true}, // JSON escapes are JSON
		{`{"read_rows":"1\u0000"}`, chhttp.Summary{}, false},
	} {
		got, ok := chhttp.ParseSummary(tc.header)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseSummary(%q) = %+v, %v; want %+v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseSummary(f *testing.F) {
	f.Add(`{"read_rows":"1","result_bytes":"2"}`)
	f.Add(`{"read_rows":1}`)
	f.Fuzz(func(t *testing.T, header string) {
		s, ok := chhttp.ParseSummary(header)
		if !ok && s != (chhttp.Summary{}) {
			t.Errorf("ParseSummary(%q) = %+v with ok false", header, s)
		}
	})
}

// summaryOf runs sql on s as the account "default", reads the answer to
// its end and returns its X-ClickHouse-Summary header (all its values).
func summaryOf(t *testing.T, s *chtest.Server, sql string) (string, []string) {
	t.Helper()
	u, err := url.Parse(s.HTTPURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	c := &chhttp.Client{URL: u, User: "default"}
	body, h, err := c.Open(context.Background(), sql, nil, nil)
	if err != nil {
		t.Fatalf("%s: %q: %v", s.Release, sql, err)
	}
	defer body.Close()
	if _, err := io.Copy(io.Discard, body); err != nil {
		t.Fatal(err)
	}
	return h.Get(chhttp.SummaryHeader), h.Values(http.CanonicalHeaderKey(chhttp.SummaryHeader))
}

// The header as real servers send it.
func TestSummaryFromServer(t *testing.T) {
	t.Run("18.16", func(t *testing.T) {
		t.Parallel()
		s := chtest.Start(t, chtest.Options{})
		// ClickHouse 18.16 sends no X-ClickHouse-Summary, for a SELECT,
		// a CREATE or an INSERT: there is nothing to parse, which
		// ParseSummary reports as not ok.
		for _, sql := range []string{"SELECT number FROM system.numbers LIMIT 1000", "CREATE TABLE default.t (x UInt64) ENGINE = Memory", "INSERT INTO default.t SELECT number FROM system.numbers LIMIT 10"} {
			if h, all := summaryOf(t, s, sql); len(all) != 0 {
				t.Errorf("%q: 18.16 sent X-ClickHouse-Summary %q; this test and the doc of ParseSummary say it sends none", sql, h)
			}
		}
		if _, ok := chhttp.ParseSummary(""); ok {
			t.Error(`ParseSummary("") is ok`)
		}
	})
	t.Run("26.7", func(t *testing.T) {
		t.Parallel()
		s := chtest.Start(t, chtest.Options{Release: chtest.ChDB267})
		h, _ := summaryOf(t, s, "SELECT number FROM numbers(1000)")
		t.Logf("SELECT: %s", h)
		got, ok := chhttp.ParseSummary(h)
		if !ok || got.ReadRows != 1000 || got.ReadBytes != 8000 || got.TotalRowsToRead != 1000 || got.ResultRows != 1000 ||
			got.ResultBytes == 0 || got.WrittenRows != 0 || got.WrittenBytes != 0 {
			t.Errorf("SELECT of 1000 UInt64: ParseSummary(%q) = %+v, %v", h, got, ok)
		}
		summaryOf(t, s, "CREATE TABLE default.t (x UInt64) ENGINE = Memory")
		h, _ = summaryOf(t, s, "INSERT INTO default.t SELECT number FROM numbers(10)")
		t.Logf("INSERT: %s", h)
		got, ok = chhttp.ParseSummary(h)
		if !ok || got.WrittenRows != 10 || got.WrittenBytes != 80 || got.ReadRows != 10 {
			t.Errorf("INSERT of 10 UInt64: ParseSummary(%q) = %+v, %v", h, got, ok)
		}
	})
}
