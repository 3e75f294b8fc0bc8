package clickhouse

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxIdentifierBytes bounds names that reach SQL.
const MaxIdentifierBytes = 4096

// QuoteIdentifier returns name as a ClickHouse identifier in backticks.
// Every identifier that clickgate puts into SQL goes through it: user
// names come from tokens, so any byte may be hostile. Backslash and
// backtick are escaped, control characters written as escapes, so the
// result is one token on one line whatever the name holds.
func QuoteIdentifier(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return quote(name, '`'), nil
}

// QuoteString returns s as a ClickHouse string literal in single quotes.
func QuoteString(s string) (string, error) {
	if err := checkName(s); err != nil {
		return "", err
	}
	return quote(s, '\''), nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("clickhouse: empty name")
	case len(name) > MaxIdentifierBytes:
		return fmt.Errorf("clickhouse: name is %d bytes; the limit is %d", len(name), MaxIdentifierBytes)
	case !utf8.ValidString(name):
		return errors.New("clickhouse: name is not valid UTF-8")
	}
	return nil
}

func quote(s string, q byte) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte(q)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c == q:
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == 0:
			b.WriteString(`\0`)
		case c < ' ' || c == 0x7f:
			fmt.Fprintf(&b, `\x%02X`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// quoteList quotes each name and joins them with ", ".
func quoteList(names []string) (string, error) {
	quoted := make([]string, len(names))
	for i, n := range names {
		q, err := QuoteIdentifier(n)
		if err != nil {
			return "", err
		}
		quoted[i] = q
	}
	return strings.Join(quoted, ", "), nil
}
