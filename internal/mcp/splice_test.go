package mcp

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestSplicer: a message written with placeholders reaches the client
// with the answers in their place, for one call and for a batch written
// as one JSON array, and a message without placeholders passes as it is.
func TestSplicer(t *testing.T) {
	a := &spliced{}
	answers := make([]encodedRows, 2)
	var want [2]struct {
		text       string
		structured []byte
	}
	for i, body := range []string{encodeTSVCases()[1], "a\nString\n\"q\\\\\n"} {
		for _, jsonText := range []bool{false, true} {
			e := encodedRows{jsonText: jsonText}
			res, err := scanTSV(strings.NewReader(body), 1000, 1<<20, &e)
			if err != nil {
				t.Fatal(err)
			}
			e.finish(res)
			if jsonText {
				answers[i] = e
			} else {
				want[i].text, want[i].structured = e.text.String(), e.structured.bytes()
			}
		}
	}
	ph1, sph1 := a.stash(&answers[0])
	ph2, sph2 := a.stash(&answers[1])
	message := func(text string, structured []byte) string {
		tb, _ := json.Marshal(text)
		return `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":` + string(tb) + `}],"structuredContent":` + string(structured) + `}}`
	}
	rec := httptest.NewRecorder()
	w := &splicer{ResponseWriter: rec, a: a}
	notification := `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}`
	w.Write([]byte(notification))
	batch := "[" + message(ph1, sph1) + "," + message(ph2, sph2) + "]"
	if n, err := w.Write([]byte(batch)); n != len(batch) || err != nil {
		t.Fatalf("Write = %d, %v; want %d", n, err, len(batch))
	}
	out := rec.Body.Bytes()
	if !bytes.HasPrefix(out, []byte(notification)) {
		t.Fatalf("the notification was changed: %.200s", out)
	}
	var got []struct {
		Result struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
			StructuredContent json.RawMessage `json:"structuredContent"`
		} `json:"result"`
	}
	if err := json.Unmarshal(out[len(notification):], &got); err != nil {
		t.Fatalf("the spliced batch is not JSON: %v\n%.500s", err, out)
	}
	for i, want := range want {
		if got[i].Result.Content[0].Text != want.text || !bytes.Equal(got[i].Result.StructuredContent, want.structured) {
			t.Errorf("answer %d: text %.100q, structured %.100s", i, got[i].Result.Content[0].Text, got[i].Result.StructuredContent)
		}
	}
	if len(a.answers) != 0 {
		t.Errorf("%d answers kept after they were written", len(a.answers))
	}
	// Once every answer is written, writes pass as they are, even one
	// that looks like an old placeholder.
	rec.Body.Reset()
	w.Write([]byte(message(ph1, sph1)))
	if rec.Body.String() != message(ph1, sph1) {
		t.Errorf("a write after the answers was changed: %.200s", rec.Body.String())
	}
}

// FuzzJSONStringBody: any valid UTF-8 text comes back as itself.
func FuzzJSONStringBody(f *testing.F) {
	for _, h := range hostile {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // the text form is always valid UTF-8
		}
		out := append(appendJSONStringBody([]byte{'"'}, []byte(s)), '"')
		var back string
		if err := json.Unmarshal(out, &back); err != nil || back != s {
			t.Fatalf("%q written as %s reads back as %q, %v", s, out, back, err)
		}
	})
}
