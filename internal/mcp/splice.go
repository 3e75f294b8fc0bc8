package mcp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
)

// Over HTTP, a query tool's answer does not go through the SDK's response
// encoding: go-sdk v1.8.0 marshals a tool result through three nested
// MarshalJSON methods (content, result, JSON-RPC message), and
// encoding/json validates and copies the output of each, so a big answer
// is copied four times and every copy is alive at once (bench/README.md,
// issue 16). Instead the tool hands the SDK a result whose text and
// structured content are placeholders naming a random nonce, and keeps
// the answer here; the response writer puts the answer in place of the
// placeholders as the SDK writes the message. The nonce is made after the
// request arrived and the SDK's messages never carry ClickHouse's data, so
// nothing a client or a row says can pose as a placeholder.

// spliced are the answers of one HTTP request's tool calls (a batch may
// have several), by nonce, until the response writer has put them in.
type spliced struct {
	mu      sync.Mutex
	answers map[string]*answer
}

// answer is an encoded tool answer, the text as the inside of its JSON
// string, and the placeholders that stand for it in the SDK's message.
type answer struct {
	text, structured     [][]byte
	textPH, structuredPH []byte
	written              int // placeholders replaced
}

type splicedKey struct{}

// withSpliced returns ctx carrying a; a tool call that finds it there
// answers through it (stash).
func withSpliced(ctx context.Context, a *spliced) context.Context {
	return context.WithValue(ctx, splicedKey{}, a)
}

func splicedFrom(ctx context.Context) *spliced {
	a, _ := ctx.Value(splicedKey{}).(*spliced)
	return a
}

// stash keeps e's answer and returns the placeholders to give the SDK:
// text (JSON-encoded by the SDK as itself) and structured content. e's
// text must be kept as JSON (encodedRows.jsonText).
func (a *spliced) stash(e *encodedRows) (textPH string, structuredPH []byte) {
	var b [16]byte
	rand.Read(b[:])
	nonce := hex.EncodeToString(b[:])
	textPH = "clickgate-answer-text:" + nonce
	structuredPH = []byte(`{"clickgate-answer":"` + nonce + `"}`)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.answers == nil {
		a.answers = map[string]*answer{}
	}
	a.answers[nonce] = &answer{text: e.text.blocks, structured: e.structured.blocks, textPH: []byte(`"` + textPH + `"`), structuredPH: structuredPH}
	return textPH, structuredPH
}

// splicer is the response writer that puts stashed answers in place of
// their placeholders. The SDK writes each JSON-RPC message (or SSE event)
// in one Write, so a placeholder is never split between writes.
type splicer struct {
	http.ResponseWriter
	a *spliced
}

func (w *splicer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *splicer) Write(p []byte) (int, error) {
	w.a.mu.Lock()
	pending := len(w.a.answers) > 0
	w.a.mu.Unlock()
	if !pending {
		return w.ResponseWriter.Write(p)
	}
	n := len(p)
	out := bufio.NewWriterSize(w.ResponseWriter, 32<<10)
	for {
		at, ph, replace := w.next(p)
		if at < 0 {
			break
		}
		out.Write(p[:at])
		replace(out)
		p = p[at+len(ph):]
	}
	out.Write(p)
	return n, out.Flush()
}

// next finds the first placeholder in p: its offset (-1: none), the
// placeholder, and what writes its answer.
func (w *splicer) next(p []byte) (at int, ph []byte, replace func(*bufio.Writer)) {
	w.a.mu.Lock()
	defer w.a.mu.Unlock()
	at = -1
	for nonce, ans := range w.a.answers {
		if i := bytes.Index(p, ans.textPH); i >= 0 && (at < 0 || i < at) {
			at, ph, replace = i, ans.textPH, w.put(nonce, ans, func(out *bufio.Writer) {
				out.WriteByte('"')
				writeBlocks(out, ans.text)
				out.WriteByte('"')
			})
		}
		if i := bytes.Index(p, ans.structuredPH); i >= 0 && (at < 0 || i < at) {
			at, ph, replace = i, ans.structuredPH, w.put(nonce, ans, func(out *bufio.Writer) { writeBlocks(out, ans.structured) })
		}
	}
	return at, ph, replace
}

// put returns write, after which ans is forgotten once both its
// placeholders are replaced.
func (w *splicer) put(nonce string, ans *answer, write func(*bufio.Writer)) func(*bufio.Writer) {
	return func(out *bufio.Writer) {
		write(out)
		w.a.mu.Lock()
		defer w.a.mu.Unlock()
		if ans.written++; ans.written == 2 {
			delete(w.a.answers, nonce)
		}
	}
}

func writeBlocks(out *bufio.Writer, blocks [][]byte) {
	for _, b := range blocks {
		out.Write(b)
	}
}
