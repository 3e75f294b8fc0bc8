package clickhouse

import "github.com/clickgate/clickgate/internal/chsql"

// MaxIdentifierBytes bounds names that reach SQL.
//
// Deprecated: use chsql.MaxIdentifierBytes.
const MaxIdentifierBytes = chsql.MaxIdentifierBytes

// QuoteIdentifier quotes a name as an identifier.
//
// Deprecated: use chsql.QuoteIdentifier, which this calls.
func QuoteIdentifier(name string) (string, error) { return chsql.QuoteIdentifier(name) }

// QuoteString quotes a name as a string literal.
//
// Deprecated: use chsql.QuoteString, which this calls.
func QuoteString(name string) (string, error) { return chsql.QuoteString(name) }
