package audit

import (
	"fmt"
	"strings"
	"time"

	"github.com/clickgate/clickgate/internal/chhttp"
	"github.com/clickgate/clickgate/internal/chsql"
)

// layout is what a server version supports, and so how the table looks.
type layout struct {
	// modern (≥ 20.1): event_time_microseconds is DateTime64(6, 'UTC') and
	// low-cardinality columns are LowCardinality(String). Before 20.1 there
	// is no DateTime64, and LowCardinality is experimental before 19.x
	// (behind allow_experimental_low_cardinality_type): the old layout has
	// event_time_microseconds as UInt64 microseconds since the epoch —
	// exact, sortable on its own, and what Go writes as a plain number —
	// and plain String columns.
	modern bool
	// ttl: TTL clauses exist from 19.6.
	ttl bool
	// dedupToken (≥ 22.2): the MergeTree setting
	// non_replicated_deduplication_window and the insert setting
	// insert_deduplication_token, so that a replayed batch whose first
	// insert succeeded is dropped at insert time, not only at merges.
	dedupToken bool
}

func layoutFor(v chhttp.Version) layout {
	return layout{modern: v.AtLeast(20, 1), ttl: v.AtLeast(19, 6), dedupToken: v.AtLeast(22, 2)}
}

// dedupWindow is non_replicated_deduplication_window: how many recent
// inserts' tokens the table remembers.
const dedupWindow = 1000

// column is one column of the table: its name (the Record's JSON name) and
// whether it holds few distinct values.
type column struct {
	name, typ string
	lowCard   bool
}

// columns are the table's columns after event_id, event_date, event_time
// and event_time_microseconds, in order.
var columns = []column{
	{"type", "String", true},
	{"user", "String", false},
	{"subject", "String", false},
	{"processor", "String", true},
	{"roles", "Array(String)", true},
	{"account", "String", true},
	{"mode", "String", true},
	{"interface", "String", true},
	{"client_address", "String", false},
	{"client_port", "UInt16", false},
	{"http_user_agent", "String", false},
	{"query_id", "String", false},
	{"session_id", "String", false},
	{"query_kind", "String", true},
	{"query", "String", false},
	{"tool", "String", true},
	{"arguments", "String", false},
	{"outcome", "String", true},
	{"query_duration_us", "UInt64", false},
	{"http_status", "UInt16", false},
	{"exception_code", "Int32", false},
	{"failure_reason", "String", false},
	{"read_rows", "UInt64", false},
	{"read_bytes", "UInt64", false},
	{"written_rows", "UInt64", false},
	{"result_rows", "UInt64", false},
	{"client_id", "String", false},
}

// Schema returns the CREATE TABLE statement of the audit table for a
// ClickHouse server version ("18.16.1", "26.7"): the DDL of the README.
// database and table are names (quoted here); ttl, when not 0, drops rows
// that much after their event time and is refused before 19.6.
//
// On 18.16 (the old layout):
//
//	CREATE TABLE IF NOT EXISTS `default`.`clickgate_audit`
//	(
//	    event_id UUID,
//	    event_date Date,
//	    event_time DateTime('UTC'),
//	    event_time_microseconds UInt64,
//	    type String,
//	    user String,
//	    … (every Record field, String or numbers)
//	    roles Array(String),
//	    …
//	)
//	ENGINE = ReplacingMergeTree
//	PARTITION BY event_date
//	ORDER BY (user, event_time, event_id)
//
// On 20.1 and later event_time_microseconds is DateTime64(6, 'UTC') and
// the columns with few values are LowCardinality(String); from 22.2 the
// table also has SETTINGS non_replicated_deduplication_window = 1000.
//
// ReplacingMergeTree with event_id in the sorting key removes the copies
// that a replayed batch may add (its first insert succeeded, the answer was
// lost) when parts merge; readers use FINAL so that they never see them.
// event_time is in the key so that "one person over time" reads a range.
func Schema(version, database, table string, ttl time.Duration) (string, error) {
	v, err := chhttp.ParseVersion(version)
	if err != nil {
		return "", err
	}
	return createTable(layoutFor(v), database, table, ttl)
}

func createTable(l layout, database, table string, ttl time.Duration) (string, error) {
	name, err := tableName(database, table)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s\n(\n", name)
	b.WriteString("    event_id UUID,\n    event_date Date,\n    event_time DateTime('UTC'),\n")
	if l.modern {
		b.WriteString("    event_time_microseconds DateTime64(6, 'UTC'),\n")
	} else {
		b.WriteString("    event_time_microseconds UInt64,\n")
	}
	for i, c := range columns {
		typ := c.typ
		if l.modern && c.lowCard {
			typ = strings.Replace(typ, "String", "LowCardinality(String)", 1)
		}
		fmt.Fprintf(&b, "    %s %s", c.name, typ)
		if i < len(columns)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString(")\nENGINE = ReplacingMergeTree\nPARTITION BY event_date\nORDER BY (user, event_time, event_id)\n")
	if ttl > 0 {
		if !l.ttl {
			return "", fmt.Errorf("audit.clickhouse.ttl: this ClickHouse has no TTL (it came in 19.6); remove the ttl and delete old partitions with ALTER TABLE %s DROP PARTITION", name)
		}
		secs := int64((ttl + time.Second - 1) / time.Second)
		fmt.Fprintf(&b, "TTL event_time + INTERVAL %d SECOND\n", secs)
	}
	if l.dedupToken {
		fmt.Fprintf(&b, "SETTINGS non_replicated_deduplication_window = %d\n", dedupWindow)
	}
	return b.String(), nil
}

// tableName returns `database`.`table`.
func tableName(database, table string) (string, error) {
	db, err := chsql.QuoteIdentifier(database)
	if err != nil {
		return "", fmt.Errorf("audit.clickhouse.database: %w", err)
	}
	t, err := chsql.QuoteIdentifier(table)
	if err != nil {
		return "", fmt.Errorf("audit.clickhouse.table: %w", err)
	}
	return db + "." + t, nil
}

// columnNames lists every column, in the table's order.
func columnNames() []string {
	names := []string{"event_id", "event_date", "event_time", "event_time_microseconds"}
	for _, c := range columns {
		names = append(names, c.name)
	}
	return names
}
