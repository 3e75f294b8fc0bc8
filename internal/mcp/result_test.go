package mcp

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestReadTSV(t *testing.T) {
	head := "n\ts\tf\tb\tbig\nNullable(UInt32)\tString\tFloat64\tBool\tUInt64\n"
	tests := []struct {
		name            string
		body            string
		maxRows, maxB   int
		rows            [][]any
		truncated       bool
		reasonSubstring string
	}{
		{"types and escapes", head + "1\ta\\tb\\nc\t1.5\ttrue\t18446744073709551615\n\\N\tback\\\\slash\tnan\tfalse\t0\n", 10, 1000,
			[][]any{{int64(1), "a\tb\nc", 1.5, true, "18446744073709551615"}, {nil, `back\slash`, "nan", false, "0"}}, false, ""},
		{"row cap", head + "1\ta\t1\ttrue\t1\n2\tb\t2\ttrue\t2\n3\tc\t3\ttrue\t3\n", 2, 1000,
			[][]any{{int64(1), "a", 1.0, true, "1"}, {int64(2), "b", 2.0, true, "2"}}, true, "max_result_rows = 2"},
		{"byte cap", head + "1\taaaaaaaaaa\t1\ttrue\t1\n2\tbbbbbbbbbb\t2\ttrue\t2\n", 10, 25,
			[][]any{{int64(1), "aaaaaaaaaa", 1.0, true, "1"}}, true, "max_result_bytes = 25"},
		{"one huge row is never read whole", head + "1\t" + strings.Repeat("x", 1<<20) + "\t1\ttrue\t1\n", 10, 1000,
			[][]any{}, true, "max_result_bytes"},
		{"no result", "", 10, 1000, [][]any{}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := readTSV(strings.NewReader(tc.body), tc.maxRows, tc.maxB)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Rows, tc.rows) || res.RowCount != len(tc.rows) || res.Truncated != tc.truncated || !strings.Contains(res.TruncatedReason, tc.reasonSubstring) {
				t.Fatalf("got %v (count %d, truncated %v %q)", fmt.Sprint(res.Rows)[:min(200, len(fmt.Sprint(res.Rows)))], res.RowCount, res.Truncated, res.TruncatedReason)
			}
		})
	}
	if _, err := readTSV(strings.NewReader("a\tb\nString\n"), 1, 100); err == nil {
		t.Error("a header with mismatched names and types was accepted")
	}
}
