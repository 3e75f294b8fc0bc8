package mcp

import (
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// typedValueBefore is how fields became JSON values before readTSV read
// rows in place; cellKind.value must agree with it on every field.
func typedValueBefore(field, typ string) any {
	if field == `\N` && strings.HasPrefix(typ, "Nullable(") {
		return nil
	}
	switch strings.TrimSuffix(strings.TrimPrefix(typ, "Nullable("), ")") {
	case "Int8", "Int16", "Int32", "UInt8", "UInt16", "UInt32":
		if n, err := strconv.ParseInt(field, 10, 64); err == nil {
			return n
		}
	case "Float32", "Float64":
		if f, err := strconv.ParseFloat(field, 64); err == nil && !isSpecial(field) {
			return f
		}
	case "Bool":
		return field == "true"
	}
	return unescapeTSV(field)
}

func FuzzCellValue(f *testing.F) {
	types := []string{"Int8", "UInt32", "Nullable(Int32)", "Float64", "Nullable(Float32)", "Bool", "Nullable(Bool)",
		"String", "Nullable(String)", "UInt64", "Int64", "Date", "Decimal(10, 2)", "Nullable(Decimal(10, 2))", ""}
	fields := []string{"", "0", "-0", "+7", "-", "+", "12", "-2147483648", "4294967295", "9223372036854775807",
		"9223372036854775808", "-9223372036854775808", "-9223372036854775809", "999999999999999999", "1000000000000000000",
		"00000000000000000000001", "1_0", "0x10", "1e3", "1.5", "nan", "inf", "-inf", "Inf", "1e400", `\N`, "NULL",
		"true", "false", `a\tb\\c\n`, "x\xff", strconv.Itoa(math.MaxInt32)}
	for i := range types {
		for _, fl := range fields {
			f.Add(fl, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, field string, ti uint8) {
		typ := types[int(ti)%len(types)]
		got, want := kindOf(typ).value([]byte(field)), typedValueBefore(field, typ)
		if !reflect.DeepEqual(got, want) && !(isNaN(got) && isNaN(want)) {
			t.Fatalf("%q as %s: %#v, before %#v", field, typ, got, want)
		}
	})
}

func isNaN(v any) bool { f, ok := v.(float64); return ok && math.IsNaN(f) }

// TestReadTSVLongLines: lines longer than the reader's buffer, headers
// and rows alike, come through whole.
func TestReadTSVLongLines(t *testing.T) {
	long := strings.Repeat("y", 40<<10)
	body := "a\t" + long + "\nString\tNullable(String)\n" + long + "\t\\N\nz\t" + long + "\n1\t2"
	res, err := readTSV(strings.NewReader(body), 10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]any{{long, nil}, {"z", long}, {"1", "2"}}
	if res.Columns[1].Name != long || !reflect.DeepEqual(res.Rows, want) || res.Truncated {
		t.Fatalf("got %d columns, %d rows, truncated %v", len(res.Columns), len(res.Rows), res.Truncated)
	}
	// More cells than columns are kept as text, as before.
	res, err = readTSV(strings.NewReader("a\nUInt8\n1\t2\t3\n"), 10, 100)
	if err != nil || !reflect.DeepEqual(res.Rows, [][]any{{int64(1), "2", "3"}}) {
		t.Fatalf("%v %v", res.Rows, err)
	}
}
