// Package chsql quotes values for ClickHouse SQL: the one place where
// clickgate writes a name or a string into a statement. Names come from
// tokens, so any byte may be hostile: backslash and the quote are escaped
// and control characters written as escapes, so a quoted value is one
// token on one line whatever it holds, and ClickHouse reads back exactly
// its bytes. It imports nothing of clickgate's.
package chsql

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxIdentifierBytes bounds names that reach SQL.
const MaxIdentifierBytes = 4096

// QuoteIdentifier returns name as a ClickHouse identifier in backticks.
// Every identifier that clickgate puts into SQL goes through it. An empty
// name, one longer than MaxIdentifierBytes or one that is not UTF-8 is
// refused.
func QuoteIdentifier(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return quote(name, '`'), nil
}

// QuoteString returns name as a ClickHouse string literal in single
// quotes, refusing what QuoteIdentifier refuses: for names (users, roles,
// databases, keys) compared with strings in SQL.
func QuoteString(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return quote(name, '\''), nil
}

// QuoteIdentifiers quotes each name and joins them with ", ".
func QuoteIdentifiers(names []string) (string, error) {
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

// Literal returns s as a ClickHouse string literal in single quotes, for
// data rather than names: any bytes, the empty string and invalid UTF-8
// included, read back as they are.
func Literal(s string) string { return quote(s, '\'') }

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

// Unescape decodes the escape sequence that follows a backslash, as
// ClickHouse reads it in string literals and quoted names and writes it in
// its TabSeparated output: \xHH, the C escapes, any other character as
// itself (\x without two hex digits is "x"). s starts after the backslash
// and is not empty; n is how many bytes of s the sequence used.
func Unescape[T string | []byte](s T) (c byte, n int) {
	switch s[0] {
	case 'x': // not \X: 18.16 reads it as "X", 26.7 keeps "\X"
		if len(s) >= 3 && isHex(s[1]) && isHex(s[2]) {
			return unhex(s[1])<<4 | unhex(s[2]), 3
		}
		return 'x', 1
	case 'n':
		return '\n', 1
	case 't':
		return '\t', 1
	case 'r':
		return '\r', 1
	case '0':
		return 0, 1
	case 'b':
		return '\b', 1
	case 'f':
		return '\f', 1
	case 'a':
		return '\a', 1
	case 'v':
		return '\v', 1
	}
	return s[0], 1
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
