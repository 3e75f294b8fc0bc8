package chsql_test

import (
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/chdbtest"
	"github.com/clickgate/clickgate/internal/chsql"
)

func TestQuoteHostileNames(t *testing.T) {
	for _, name := range chdbtest.HostileNames {
		for quoteChar, quote := range map[byte]func(string) (string, error){'`': chsql.QuoteIdentifier, '\'': chsql.QuoteString} {
			q, err := quote(name)
			if err != nil {
				t.Fatalf("%q: %v", name, err)
			}
			if q[0] != quoteChar || q[len(q)-1] != quoteChar {
				t.Fatalf("%q: not quoted with %c: %s", name, quoteChar, q)
			}
			if strings.ContainsAny(q, "\n\r\x00") {
				t.Fatalf("%q: raw control character in %q", name, q)
			}
			if got := unquote(t, q); got != name {
				t.Fatalf("round trip of %q gave %q", name, got)
			}
			if quoteChar == '\'' && chsql.Literal(name) != q {
				t.Fatalf("Literal(%q) = %s, QuoteString gave %s", name, chsql.Literal(name), q)
			}
		}
	}
	for _, bad := range []string{"", strings.Repeat("x", chsql.MaxIdentifierBytes+1), "\xff\xfe"} {
		if _, err := chsql.QuoteIdentifier(bad); err == nil {
			t.Errorf("%q accepted as an identifier", bad)
		}
		if _, err := chsql.QuoteString(bad); err == nil {
			t.Errorf("%q accepted as a name", bad)
		}
		if got := unquote(t, chsql.Literal(bad)); got != bad {
			t.Errorf("Literal round trip of %.20q gave %.20q", bad, got)
		}
	}
	if got, err := chsql.QuoteIdentifiers([]string{"a`b", "c"}); err != nil || got != "`a\\`b`, `c`" {
		t.Errorf("QuoteIdentifiers = %s, %v", got, err)
	}
	if _, err := chsql.QuoteIdentifiers([]string{"ok", ""}); err == nil {
		t.Error("QuoteIdentifiers accepted an empty name")
	}
}

// The real current ClickHouse engine (chDB 26.x) reads every quoted name
// and literal back as exactly the original bytes.
func TestClickHouseReadsWhatWasQuoted(t *testing.T) {
	e := chdbtest.Open(t)
	for _, name := range chdbtest.HostileNames {
		quoted, _ := chsql.QuoteIdentifier(name)
		if got, err := e.Identifier(quoted); err != nil || got != name {
			t.Errorf("%.40q: ClickHouse reads %.60s as %.40q (%v)", name, quoted, got, err)
		}
	}
	for _, s := range append(chdbtest.HostileNames, "", "\xff\xfe invalid UTF-8", "{}?$1 %s", "del\x7f") {
		got, err := e.Exec("SELECT "+chsql.Literal(s), "RawBLOB")
		if err != nil || got != s {
			t.Errorf("SELECT %.60s = %.40q (%v), want %.40q", chsql.Literal(s), got, err, s)
		}
	}
}

// unquote reads a quoted name the way ClickHouse's lexer does: the
// closing quote is the first unescaped one, and it must be the last byte.
func unquote(t *testing.T, q string) string {
	t.Helper()
	quoteChar := q[0]
	var b strings.Builder
	for i := 1; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\\':
			i++
			switch q[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '0':
				b.WriteByte(0)
			case 'x':
				var v byte
				for _, h := range q[i+1 : i+3] {
					v = v<<4 | byte(strings.IndexRune("0123456789ABCDEF", h))
				}
				b.WriteByte(v)
				i += 2
			default:
				b.WriteByte(q[i])
			}
		case c == quoteChar:
			if i != len(q)-1 {
				t.Fatalf("quote closes early at %d in %q", i, q)
			}
			return b.String()
		default:
			b.WriteByte(c)
		}
	}
	t.Fatalf("unterminated: %q", q)
	return ""
}
