package servers

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The MCP tools in both modes on both releases. clickgate asks the server
// which columns its system tables have (schema.go): 26.7 has table
// comments, sizes and column positions that 18.16 lacks, and EXPLAIN,
// which 18.16 lacks altogether (clickgate says so without asking it).
func testMCPTools(t *testing.T, e *env) {
	// 18.16 has column comments but no table comment (a syntax error).
	tableComment := ""
	if modern(e.release) {
		tableComment = " COMMENT 'orders of the shop'"
	}
	e.admin(t, "CREATE DATABASE shop")
	e.admin(t, `CREATE TABLE shop.orders (
		id UInt32 COMMENT 'order id',
		customer String DEFAULT 'anon' COMMENT 'who ordered',
		total UInt64 MATERIALIZED id * 2,
		id_next UInt64 ALIAS id + 1,
		day Date
	) ENGINE = MergeTree PARTITION BY toYYYYMM(day) ORDER BY (id, customer)`+tableComment)
	e.admin(t, "INSERT INTO shop.orders (id, customer, day) SELECT number, concat('c', toString(number % 3)), toDate('2026-01-01') FROM system.numbers LIMIT 20")
	e.admin(t, "CREATE TABLE shop.returns (id UInt32) ENGINE = Memory")

	for _, f := range []*front{e.service, e.mapped} {
		account := svcUser // alice's account in f's mode
		if f == e.mapped {
			account = readerUser
		}
		cs := e.connect(t, f, alice)
		t.Run(f.name, func(t *testing.T) {
			t.Run("list_databases", func(t *testing.T) {
				r := call(t, cs, "list_databases", nil)
				got := column(t, r.structured, "name")
				for _, db := range []string{"default", "shop", "system"} {
					if !slices.Contains(got, db) {
						t.Errorf("%s missing from %q", db, got)
					}
				}
			})

			t.Run("list_tables", func(t *testing.T) {
				r := call(t, cs, "list_tables", map[string]any{"database": "shop"})
				// 18.16's system.tables has neither sizes nor comments.
				want := []string{"name", "engine"}
				if modern(e.release) {
					want = []string{"name", "engine", "total_rows", "total_bytes", "comment"}
				}
				if got := columnNames(t, r.structured); !slices.Equal(got, want) {
					t.Fatalf("columns %q, want %q", got, want)
				}
				if got := column(t, r.structured, "name"); !slices.Equal(got, []string{"orders", "returns"}) {
					t.Errorf("tables %q", got)
				}
				if got := column(t, r.structured, "engine"); !slices.Equal(got, []string{"MergeTree", "Memory"}) {
					t.Errorf("engines %q", got)
				}
				if modern(e.release) {
					if got := column(t, r.structured, "comment"); !slices.Equal(got, []string{"orders of the shop", ""}) {
						t.Errorf("comments %q", got)
					}
					if got := column(t, r.structured, "total_rows")[0]; got != "20" {
						t.Errorf("orders total_rows %s, want 20", got)
					}
				}
				r = call(t, cs, "list_tables", map[string]any{"database": "shop", "like": "ret%"})
				if got := column(t, r.structured, "name"); !slices.Equal(got, []string{"returns"}) {
					t.Errorf("like ret%%: %q", got)
				}
			})

			t.Run("describe_table", func(t *testing.T) {
				r := call(t, cs, "describe_table", map[string]any{"database": "shop", "table": "orders"})
				if r.isError {
					t.Fatal(r.text)
				}
				table, columns := r.structured["table"], r.structured["columns"]
				wantTable := []string{"database", "name", "engine", "engine_full", "partition_key", "sorting_key", "primary_key"}
				if modern(e.release) {
					wantTable = append(wantTable, "total_rows", "total_bytes", "comment")
				}
				if got := columnNames(t, table); !slices.Equal(got, wantTable) {
					t.Errorf("table columns %q, want %q", got, wantTable)
				}
				for name, want := range map[string]string{"partition_key": "toYYYYMM(day)", "sorting_key": "id, customer", "primary_key": "id, customer"} {
					if got := column(t, table, name); !slices.Equal(got, []string{want}) {
						t.Errorf("%s %q, want %q", name, got, want)
					}
				}
				if modern(e.release) {
					if got := column(t, table, "comment"); !slices.Equal(got, []string{"orders of the shop"}) {
						t.Errorf("table comment %q", got)
					}
				}
				wantColumns := []string{"name", "type", "default_kind", "default_expression", "comment", "is_in_partition_key", "is_in_sorting_key", "is_in_primary_key"}
				if got := columnNames(t, columns); !slices.Equal(got, wantColumns) {
					t.Errorf("column details %q, want %q", got, wantColumns)
				}
				// 26.7 has system.columns.position: the declared order.
				// 18.16 lists ordinary columns before MATERIALIZED and
				// ALIAS ones, as it stores the table.
				id := "id\tUInt32\t\t\torder id\t0\t1\t1"
				customer := "customer\tString\tDEFAULT\t'anon'\twho ordered\t0\t1\t1"
				total := "total\tUInt64\tMATERIALIZED\tid * 2\t\t0\t0\t0"
				idNext := "id_next\tUInt64\tALIAS\tid + 1\t\t0\t0\t0"
				day := "day\tDate\t\t\t\t1\t0\t0"
				want := []string{id, customer, day, total, idNext}
				if modern(e.release) {
					want = []string{id, customer, total, idNext, day}
				}
				if got := rows(columns); !slices.Equal(got, want) {
					t.Errorf("columns:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				r = call(t, cs, "describe_table", map[string]any{"database": "shop", "table": "nope"})
				if !r.isError || !strings.Contains(r.text, "there is no table shop.nope") {
					t.Errorf("a missing table: %v %s", r.isError, r.text)
				}
			})

			t.Run("run_query", func(t *testing.T) {
				m := marker()
				r := call(t, cs, "run_query", map[string]any{"query": "SELECT customer, count() AS n FROM shop.orders WHERE customer != '" + m + "' GROUP BY customer ORDER BY customer"})
				if got := rows(r.structured); r.isError || !slices.Equal(got, []string{"c0\t7", "c1\t7", "c2\t6"}) {
					t.Fatalf("%v %s", got, r.text)
				}
				if got := columnNames(t, r.structured); !slices.Equal(got, []string{"customer", "n"}) {
					t.Errorf("columns %q", got)
				}
				if got := e.logged(t, m, "user"); !slices.Equal(got, []string{account}) {
					t.Errorf("ClickHouse ran it as %q, want %s", got, account)
				}
				r = call(t, cs, "run_query", map[string]any{"query": "INSERT INTO shop.returns VALUES (1)"})
				if !r.isError || !strings.Contains(r.text, "readonly") {
					t.Errorf("a write through run_query: %v %s", r.isError, r.text)
				}
				if got := e.admin(t, "SELECT count() FROM shop.returns"); got != "0" {
					t.Errorf("shop.returns has %s rows", got)
				}
			})

			t.Run("explain_query", func(t *testing.T) { testExplain(t, e, cs, account) })

			t.Run("truncated results", func(t *testing.T) {
				for _, tc := range []struct {
					name, query string
					rows        int
					reason      string // "" = not truncated
					endless     bool
				}{
					{"as many rows as allowed", "SELECT number, 'MARK' FROM system.numbers LIMIT 40", maxResultRows, "", false},
					{"max_result_rows", "SELECT number, 'MARK' FROM system.numbers LIMIT 100", maxResultRows, "more than max_result_rows = 40 rows", false},
					{"max_result_rows, endless", "SELECT number, 'MARK' FROM system.numbers", maxResultRows, "more than max_result_rows = 40 rows", true},
					// Rows of about 1.2 KB against max_result_bytes = 4096.
					{"max_result_bytes", "SELECT toString(range(300)) AS wide, 'MARK' FROM system.numbers LIMIT 5", 3, "more than max_result_bytes = 4096 bytes", false},
				} {
					t.Run(tc.name, func(t *testing.T) {
						m := marker()
						r := call(t, cs, "run_query", map[string]any{"query": strings.ReplaceAll(tc.query, "MARK", m)})
						if r.isError {
							t.Fatal(r.text)
						}
						s := r.structured
						if s["row_count"] != float64(tc.rows) || len(rows(s)) != tc.rows || s["truncated"] != (tc.reason != "") {
							t.Fatalf("row_count %v, %d rows, truncated %v; want %d, truncated %v", s["row_count"], len(rows(s)), s["truncated"], tc.rows, tc.reason != "")
						}
						if tc.reason == "" {
							if strings.Contains(r.text, "cut") || s["truncated_reason"] != nil {
								t.Errorf("not truncated, yet: %v %s", s["truncated_reason"], r.text)
							}
							return
						}
						if s["truncated_reason"] != tc.reason || !strings.Contains(r.text, "the result was cut: "+tc.reason) {
							t.Errorf("reason %v, text %q; want %q", s["truncated_reason"], r.text, tc.reason)
						}
						if tc.endless { // clickgate stopped reading: ClickHouse stops
							e.waitGone(t, m)
						}
					})
				}
			})
		})
	}
}

// testExplain runs explain_query with each kind. 26.7 runs each and logs
// it as alice's account; 18.16 has no EXPLAIN (it arrived in 20.6,
// ESTIMATE in 21.9), so clickgate answers with the version it needs and
// sends nothing.
func testExplain(t *testing.T, e *env, cs *mcp.ClientSession, account string) {
	for _, tc := range []struct {
		kind  string
		since string   // the version 18.16 is told it needs
		want  []string // on 26.7: in the answer's text
	}{
		{"", "20.6", []string{"ReadFromMergeTree"}}, // plan by default
		{"plan", "20.6", []string{"ReadFromMergeTree", "Aggregating"}},
		{"pipeline", "20.6", []string{"AggregatingTransform", "MergeTree"}},
		{"syntax", "20.6", []string{"SELECT", "FROM shop.orders", "GROUP BY customer"}},
		{"estimate", "21.9", []string{`"shop","orders"`}},
		{"ESTIMATE", "21.9", []string{`"shop","orders"`}},
	} {
		name := tc.kind
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			m := marker()
			query := "SELECT customer, count() FROM shop.orders WHERE customer != '" + m + "' GROUP BY customer"
			args := map[string]any{"query": query}
			if tc.kind != "" {
				args["kind"] = tc.kind
			}
			r := call(t, cs, "explain_query", args)
			kind := strings.ToUpper(tc.kind)
			if kind == "" {
				kind = "PLAN"
			}
			if !modern(e.release) {
				want := fmt.Sprintf("EXPLAIN %s needs ClickHouse %s or newer; this server is 18.16", kind, tc.since)
				if !r.isError || !strings.Contains(r.text, want) {
					t.Fatalf("%v %q, want an error saying %q", r.isError, r.text, want)
				}
				if got := e.logged(t, m, "query"); len(got) != 0 {
					t.Fatalf("ClickHouse was sent %q", got)
				}
				return
			}
			if r.isError {
				t.Fatal(r.text)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.text, w) {
					t.Errorf("EXPLAIN %s: %q lacks %q", kind, r.text, w)
				}
			}
			if kind == "ESTIMATE" {
				if got := columnNames(t, r.structured); !slices.Equal(got, []string{"database", "table", "parts", "rows", "marks"}) {
					t.Errorf("estimate columns %q", got)
				}
				if got := column(t, r.structured, "rows"); !slices.Equal(got, []string{"20"}) {
					t.Errorf("estimated rows %q, want 20", got)
				}
			}
			if r.structured["truncated"] != false {
				t.Errorf("EXPLAIN %s was cut: %s", kind, r.text)
			}
			got := e.logged(t, m, "user, substring(query, 1, 9 + length('"+kind+"'))")
			if want := account + "\tEXPLAIN " + kind + " "; !slices.Equal(got, []string{want}) {
				t.Errorf("query_log %q, want %q; all entries: %q", got, want, e.admin(t, "SELECT type, user, query FROM system.query_log WHERE query LIKE '%"+m+"%'"))
			}
		})
	}
	r := call(t, cs, "explain_query", map[string]any{"query": "SELECT 1", "kind": "analyze"})
	if !r.isError || !strings.Contains(r.text, `kind "analyze" is not one of plan, pipeline, syntax, estimate`) {
		t.Errorf("kind analyze: %v %s", r.isError, r.text)
	}
}
