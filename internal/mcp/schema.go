package mcp

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/clickgate/clickgate/internal/chsql"
	"github.com/clickgate/clickgate/internal/clickhouse"
)

// schemaInfo is what the server's system tables offer: ClickHouse 18.16
// and current releases differ, so clickgate asks rather than assumes.
type schemaInfo struct {
	mu      sync.Mutex
	known   bool
	version clickhouse.Version
	tables  []string // columns of system.tables
	columns []string // columns of system.columns
}

type schemaSnapshot struct {
	version clickhouse.Version
	tables  []string
	columns []string
}

// schemaInfo detects the server's version and system table columns once.
func (s *Server) schemaInfo(ctx context.Context, c *clickhouse.Caller) (*schemaSnapshot, error) {
	si := &s.schema
	si.mu.Lock()
	if si.known {
		defer si.mu.Unlock()
		return &schemaSnapshot{si.version, si.tables, si.columns}, nil
	}
	si.mu.Unlock()
	res, err := s.run(ctx, c, queryRun{sql: "SELECT version(), table, name FROM system.columns WHERE database = 'system' AND table IN ('tables', 'columns')", maxRows: 1000, maxBytes: 1 << 20})
	if err != nil {
		return nil, err
	}
	snap := &schemaSnapshot{}
	for _, row := range res.Rows {
		v, _ := row[0].(string)
		table, _ := row[1].(string)
		name, _ := row[2].(string)
		snap.version, _ = clickhouse.ParseVersion(v)
		if table == "tables" {
			snap.tables = append(snap.tables, name)
		} else {
			snap.columns = append(snap.columns, name)
		}
	}
	si.mu.Lock()
	si.known, si.version, si.tables, si.columns = true, snap.version, snap.tables, snap.columns
	si.mu.Unlock()
	return snap, nil
}

// pick returns the wanted columns that exist, in the wanted order.
func pick(have []string, want ...string) []string {
	var out []string
	for _, w := range want {
		if slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

func (s *schemaSnapshot) listTablesSQL(database, like, after string, limit int) (string, error) {
	db, err := chsql.QuoteString(database)
	if err != nil {
		return "", err
	}
	cols := pick(s.tables, "name", "engine", "total_rows", "total_bytes", "comment")
	sql := "SELECT " + strings.Join(cols, ", ") + " FROM system.tables WHERE database = " + db
	if like != "" {
		l, err := chsql.QuoteString(like)
		if err != nil {
			return "", err
		}
		sql += " AND name LIKE " + l
	}
	if after != "" {
		a, err := chsql.QuoteString(after)
		if err != nil {
			return "", err
		}
		sql += " AND name > " + a
	}
	return sql + " ORDER BY name LIMIT " + strconv.Itoa(limit), nil
}

func (s *schemaSnapshot) describeSQL(database, table string) (tableSQL, columnsSQL string, err error) {
	db, err := chsql.QuoteString(database)
	if err != nil {
		return "", "", err
	}
	t, err := chsql.QuoteString(table)
	if err != nil {
		return "", "", err
	}
	where := " WHERE database = " + db + " AND "
	tcols := pick(s.tables, "database", "name", "engine", "engine_full", "partition_key", "sorting_key", "primary_key", "total_rows", "total_bytes", "comment")
	tableSQL = "SELECT " + strings.Join(tcols, ", ") + " FROM system.tables" + where + "name = " + t
	ccols := pick(s.columns, "name", "type", "default_kind", "default_expression", "comment", "is_in_partition_key", "is_in_sorting_key", "is_in_primary_key")
	columnsSQL = "SELECT " + strings.Join(ccols, ", ") + " FROM system.columns" + where + "table = " + t
	if slices.Contains(s.columns, "position") {
		columnsSQL += " ORDER BY position"
	}
	return tableSQL, columnsSQL, nil
}

// samplingKeySQL finds the table and its sampling key: one row of name
// and, where system.tables has it, sampling_key; no row when there is no
// such table.
func (s *schemaSnapshot) samplingKeySQL(database, table string) (string, error) {
	db, err := chsql.QuoteString(database)
	if err != nil {
		return "", err
	}
	t, err := chsql.QuoteString(table)
	if err != nil {
		return "", err
	}
	cols := "name"
	if slices.Contains(s.tables, "sampling_key") {
		cols += ", sampling_key"
	}
	return "SELECT " + cols + " FROM system.tables WHERE database = " + db + " AND name = " + t, nil
}

// sampleRowsSQL reads n rows of database.table: from a sample of about
// sampleAbsoluteRowsAt rows when the table has a sampling key.
func sampleRowsSQL(database, table string, sampled bool, n int) (string, error) {
	db, err := chsql.QuoteIdentifier(database)
	if err != nil {
		return "", err
	}
	t, err := chsql.QuoteIdentifier(table)
	if err != nil {
		return "", err
	}
	sql := "SELECT * FROM " + db + "." + t
	if sampled {
		sql += " SAMPLE " + strconv.Itoa(sampleAbsoluteRowsAt)
	}
	return sql + " LIMIT " + strconv.Itoa(n), nil
}

// searchSchemaSQL finds the tables and columns whose name or comment (where
// the server has comments) contains one of words, case-insensitively, in
// the databases a allows: database, table, column (empty for a table), type
// (the engine for a table) and matched (name or comment). Each word is a
// string literal searched with position(), so %, _ and quotes are plain
// characters; ClickHouse 18.16 has no ILIKE, hence lowerUTF8 on both sides.
func (s *schemaSnapshot) searchSchemaSQL(words []string, a access, limit int) string {
	contains := func(column string) string {
		conds := make([]string, len(words))
		for i, w := range words {
			conds[i] = "position(lowerUTF8(" + column + "), lowerUTF8(" + chsql.Literal(w) + ")) > 0"
		}
		return "(" + strings.Join(conds, " OR ") + ")"
	}
	matched := func(have []string) string {
		m := "multiIf(" + contains("name") + ", 'name', "
		if slices.Contains(have, "comment") {
			m += contains("comment") + ", 'comment', "
		}
		return m + "'')"
	}
	policy := a.where("database", false)
	tables := "SELECT database, name AS table, '' AS column, engine AS type, " + matched(s.tables) +
		" AS matched FROM system.tables WHERE matched != ''" + policy
	columns := "SELECT database, table, name AS column, type, " + matched(s.columns) +
		" AS matched FROM system.columns WHERE matched != ''" + policy
	return "SELECT database, table, column, type, matched FROM (" + tables + " UNION ALL " + columns +
		") ORDER BY database, table, column LIMIT " + strconv.Itoa(limit)
}
