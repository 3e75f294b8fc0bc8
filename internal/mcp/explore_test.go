package mcp_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// exploreStack is newStack with a policy showing analysts (alice) only
// default and sampled, plus the tables the exploring tools look at:
// sampled.events has a sampling key; secret.keys is hidden from alice.
func exploreStack(t *testing.T) *stack {
	t.Helper()
	s := newStack(t, "  max_result_rows: 1000\n  policy:\n    - {roles: [analysts], databases: [default, sampled]}\n")
	for _, q := range []string{
		"CREATE DATABASE sampled", "CREATE DATABASE secret",
		"CREATE TABLE sampled.events (x UInt64, s String) ENGINE = MergeTree ORDER BY intHash32(x) SAMPLE BY intHash32(x)",
		"INSERT INTO sampled.events SELECT number, toString(number) FROM system.numbers LIMIT 100000",
		"CREATE TABLE secret.keys (k String COMMENT 'the customer key') ENGINE = Memory",
		"CREATE TABLE default.orders_eu (id UInt64 COMMENT 'the customer''s order number', amount UInt64) ENGINE = Memory",
		"CREATE TABLE default.a_b (id UInt64) ENGINE = Memory", "CREATE TABLE default.axb (id UInt64) ENGINE = Memory",
		"CREATE TABLE default.`p%q` (id UInt64) ENGINE = Memory", "CREATE TABLE default.pzzq (id UInt64) ENGINE = Memory",
	} {
		s.ch.Query(t, "ch_admin", "admin-pw", q)
	}
	return s
}

func TestExploreToolsListed(t *testing.T) {
	s := newStack(t, "")
	cs := s.connect(t, s.token(t, s.resource, "alice@example.com", "ch-analysts"))
	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, tool := range tools.Tools {
		if tool.Name != "sample_rows" && tool.Name != "search_schema" {
			continue
		}
		found++
		a := tool.Annotations
		if a == nil || !a.ReadOnlyHint || !a.IdempotentHint || a.OpenWorldHint == nil || *a.OpenWorldHint || tool.OutputSchema == nil {
			t.Errorf("%s: annotations %+v, output schema %v", tool.Name, a, tool.OutputSchema)
		}
	}
	if found != 2 {
		t.Fatalf("sample_rows and search_schema: %d of 2 listed", found)
	}
}

func TestSampleRows(t *testing.T) {
	s := exploreStack(t)
	cs := s.connect(t, s.token(t, s.resource, "alice@example.com", "ch-analysts"))
	rows := func(out map[string]any) int { r, _ := out["rows"].([]any); return len(r) }

	res, out := call(t, cs, "sample_rows", map[string]any{"database": "default", "table": "usage"})
	if res.IsError || rows(out) != 10 || out["row_count"] != float64(10) || out["sampled"] != false || len(out["columns"].([]any)) != 3 {
		t.Fatalf("default n: %s %v", text(res), out)
	}
	if res, out = call(t, cs, "sample_rows", map[string]any{"database": "default", "table": "usage", "n": 3}); res.IsError || rows(out) != 3 {
		t.Fatalf("n = 3: %s", text(res))
	}
	// n is capped at 100, and the answer says so.
	if res, out = call(t, cs, "sample_rows", map[string]any{"database": "default", "table": "usage", "n": 5000}); res.IsError || rows(out) != 100 || !strings.Contains(text(res), "at most 100") {
		t.Fatalf("n = 5000: %d rows, %.300s", rows(out), text(res))
	}
	// A table with a sampling key is read through SAMPLE.
	res, out = call(t, cs, "sample_rows", map[string]any{"database": "sampled", "table": "events", "n": 20})
	if res.IsError || rows(out) != 20 || out["sampled"] != true || out["sampling_key"] != "intHash32(x)" || !strings.Contains(text(res), "SAMPLE BY") {
		t.Fatalf("sampled table: %.300s %v", text(res), out["sampling_key"])
	}
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"database": "secret", "table": "keys"}, `the database "secret" is not available to you over MCP`},
		{map[string]any{"database": "default", "table": "missing"}, "there is no table default.missing"},
		{map[string]any{"database": "default", "table": "usage", "n": -1}, "n is -1"},
		{map[string]any{"database": "default", "table": ""}, "empty name"},
	} {
		if res, _ := call(t, cs, "sample_rows", tc.args); !res.IsError || !strings.Contains(text(res), tc.want) {
			t.Errorf("%v: %v %s", tc.args, res.IsError, text(res))
		}
	}
	// Without the policy's restriction, bob samples secret.keys.
	bob := s.connect(t, s.token(t, s.resource, "bob@example.com", "ch-admin"))
	if res, _ := call(t, bob, "sample_rows", map[string]any{"database": "secret", "table": "keys"}); res.IsError {
		t.Errorf("bob: %s", text(res))
	}
}

func TestSearchSchema(t *testing.T) {
	s := exploreStack(t)
	cs := s.connect(t, s.token(t, s.resource, "alice@example.com", "ch-analysts"))
	search := func(cs *mcp.ClientSession, words string, limit int) string {
		t.Helper()
		args := map[string]any{"words": words}
		if limit > 0 {
			args["limit"] = limit
		}
		res, out := call(t, cs, "search_schema", args)
		if res.IsError {
			t.Fatalf("search_schema %q: %s", words, text(res))
		}
		return fmt.Sprint(out["rows"])
	}
	for _, tc := range []struct{ words, want string }{
		// A table by name, case-insensitively.
		{"USAGE", "[[default usage  MergeTree name]]"},
		// A column by its comment; a word with a quote.
		{"Customer", "[[default orders_eu id UInt64 comment]]"},
		{"customer's", "[[default orders_eu id UInt64 comment]]"},
		// Any of several words: the table and the column of another.
		{"usage amount", "[[default orders_eu amount UInt64 name] [default usage  MergeTree name]]"},
		// _ and % are plain characters, not LIKE wildcards.
		{"a_b", "[[default a_b  Memory name]]"},
		{"p%q", "[[default p%q  Memory name]]"},
		// Hostile words find nothing and break nothing.
		{`x')OR(1=1)--\'"`, "[]"}, {`\`, "[]"}, {"'", "[[default orders_eu id UInt64 comment]]"},
		{`%`, "[[default p%q  Memory name]]"},
		// secret.keys's comment says customer, but alice may not see secret.
		{"keys", "[]"},
	} {
		if got := search(cs, tc.words, 0); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.words, got, tc.want)
		}
	}
	if got := search(cs, "e", 2); strings.Count(got, "] [") != 1 {
		t.Errorf("limit 2: %s", got)
	}
	for _, tc := range []struct {
		words string
		want  string
	}{{"", "words is empty"}, {strings.Repeat("w ", 21), "at most 20"}} {
		if res, _ := call(t, cs, "search_schema", map[string]any{"words": tc.words}); !res.IsError || !strings.Contains(text(res), tc.want) {
			t.Errorf("%q: %s", tc.words, text(res))
		}
	}
	// bob has no policy entry: secret.keys is found, by name and by comment.
	bob := s.connect(t, s.token(t, s.resource, "bob@example.com", "ch-admin"))
	if got := search(bob, "keys", 0); !strings.Contains(got, "[secret keys  Memory name]") {
		t.Errorf("bob, keys: %s", got)
	}
	if got := search(bob, "customer", 0); !strings.Contains(got, "[secret keys k String comment]") {
		t.Errorf("bob, customer: %s", got)
	}
}
