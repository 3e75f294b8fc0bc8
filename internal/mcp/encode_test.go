package mcp

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// encodeTSVCases are TSV answers with every kind, escapes, NULLs, hostile
// text and cuts by rows and bytes.
func encodeTSVCases() []string {
	head := "n\ts\tf\tb\tbig\tnf\nNullable(UInt32)\tString\tFloat64\tBool\tUInt64\tNullable(Float32)\n"
	hostileRows := ""
	for _, h := range hostile {
		esc := strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`).Replace(h)
		hostileRows += "7\t" + esc + "\t-0.5\tfalse\t1\t\\N\n"
	}
	return []string{
		head + "1\ta\\tb\\nc\t1.5\ttrue\t18446744073709551615\t1e-7\n\\N\tback\\\\slash\tnan\tfalse\t0\tinf\n",
		head + hostileRows,
		head + "x\t\t\t\t\t\n", // fields that are not what their type says
		head + "1\ta\n",        // fewer fields than columns
		head + "1\ta\t1\ttrue\t1\t2\textra\n",
		"weird\\tname\tq\"uote\nString\tString\n\\x41\t\\0\n",
		"",
	}
}

// TestEncodedRowsMatchValues: the encoded forms of an answer are exactly
// renderText's text and, as JSON, the Result's, which validates against
// the tools' output schema.
func TestEncodedRowsMatchValues(t *testing.T) {
	for _, body := range encodeTSVCases() {
		for _, caps := range [][2]int{{1000, 1 << 20}, {1, 1 << 20}, {1000, 40}} {
			checkEncoded(t, body, caps[0], caps[1])
		}
	}
}

func FuzzEncodedRows(f *testing.F) {
	for _, body := range encodeTSVCases() {
		f.Add(body, 1000, 1<<20)
	}
	f.Fuzz(func(t *testing.T, body string, maxRows, maxBytes int) {
		if maxRows < 1 || maxRows > 10000 || maxBytes < 1 || maxBytes > 1<<20 {
			return
		}
		checkEncoded(t, body, maxRows, maxBytes)
	})
}

func checkEncoded(t *testing.T, body string, maxRows, maxBytes int) {
	t.Helper()
	want, werr := readTSV(strings.NewReader(body), maxRows, maxBytes)
	var e encodedRows
	res, gerr := scanTSV(strings.NewReader(body), maxRows, maxBytes, &e)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%q: values: %v; encoded: %v", body, werr, gerr)
	}
	if werr != nil {
		return
	}
	e.finish(res)
	text, structured := e.text.String(), e.structured.bytes()
	wantText := renderText(want)
	if text != wantText {
		t.Fatalf("%q: text\n%s\nwant\n%s", body, text, wantText)
	}
	// The text kept for an HTTP answer is the same text as a JSON string.
	ej := encodedRows{jsonText: true}
	if _, err := scanTSV(strings.NewReader(body), maxRows, maxBytes, &ej); err != nil {
		t.Fatal(err)
	}
	ej.finish(res)
	var back string
	if err := json.Unmarshal([]byte(`"`+ej.text.String()+`"`), &back); err != nil || back != wantText {
		t.Fatalf("%q: JSON text %q reads back as %q, %v", body, ej.text.String(), back, err)
	}
	if !bytes.Equal(ej.structured.bytes(), structured) {
		t.Fatalf("%q: structured content differs with jsonText", body)
	}
	var got any
	if err := json.Unmarshal(structured, &got); err != nil {
		t.Fatalf("%q: structured content is not JSON: %v\n%s", body, err, structured)
	}
	schema, err := outputSchema[Result]().Resolve(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(got); err != nil {
		t.Fatalf("%q: structured content fails the output schema: %v\n%s", body, err, structured)
	}
	wantJSON, err := json.Marshal(want)
	if err != nil {
		return // a value JSON has no number for; the encoded form has its text
	}
	var exp any
	if err := json.Unmarshal(wantJSON, &exp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Fatalf("%q: structured content\n%s\nwant\n%s", body, structured, wantJSON)
	}
}
