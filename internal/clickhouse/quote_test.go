package clickhouse

import (
	"strings"
	"testing"
)

// hostileNames are user and role names a token could carry.
var hostileNames = []string{
	"alice@example.com",
	"o'brien",
	"back`tick",
	`back\slash`,
	`trailing\`,
	"new\nline; DROP USER admin",
	"tab\tand\rcr",
	"nul\x00byte",
	"bell\x07",
	"ünïcødé-用户-👩‍💻",
	"` OR 1=1 --",
	"'; GRANT ALL ON *.* TO `eve`; --",
	strings.Repeat("x", 1024),
	strings.Repeat("`\\'", 340),
}

func TestQuoteIdentifier(t *testing.T) {
	for _, name := range hostileNames {
		q, err := QuoteIdentifier(name)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if q[0] != '`' || q[len(q)-1] != '`' {
			t.Fatalf("%q: not backquoted: %s", name, q)
		}
		if strings.ContainsAny(q, "\n\r\x00") {
			t.Fatalf("%q: raw control character in %q", name, q)
		}
		if got := unquote(t, q); got != name {
			t.Fatalf("round trip of %q gave %q", name, got)
		}
	}
	for _, bad := range []string{"", strings.Repeat("x", MaxIdentifierBytes+1), "\xff\xfe"} {
		if _, err := QuoteIdentifier(bad); err == nil {
			t.Errorf("%q accepted", bad)
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

func TestStatements(t *testing.T) {
	must := func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct{ got, want string }{
		{must(CreateHTTPUserSQL("alice@example.com", "clickgate")), "CREATE USER IF NOT EXISTS `alice@example.com` IDENTIFIED WITH http SERVER 'clickgate'"},
		{must(CreateHTTPUserSQL("o`k", "it's")), "CREATE USER IF NOT EXISTS `o\\`k` IDENTIFIED WITH http SERVER 'it\\'s'"},
		{must(CreateImpersonationTargetSQL("bob")), "CREATE USER IF NOT EXISTS `bob` NOT IDENTIFIED"},
		{must(GrantRolesSQL([]string{"analyst", "reader"}, "a@b")), "GRANT `analyst`, `reader` TO `a@b`"},
		{must(RevokeRolesSQL([]string{"old"}, "a@b")), "REVOKE `old` FROM `a@b`"},
		{must(ExecuteAsPrefix("a\nb")), "EXECUTE AS `a\\nb` "},
		{must(RoleGrantsSQL("o'k")), "SELECT granted_role_name FROM system.role_grants WHERE user_name = 'o\\'k' FORMAT TSVRaw"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got  %s\nwant %s", tc.got, tc.want)
		}
	}
	if _, err := GrantRolesSQL([]string{"ok", ""}, "u"); err == nil {
		t.Error("an empty role name was accepted")
	}
}
