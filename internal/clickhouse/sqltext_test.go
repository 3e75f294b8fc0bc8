package clickhouse

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// fixedPolicy fixes the settings the tests try to loosen, and refuses KILL.
var fixedPolicy = TextPolicy{Fixed: []string{"readonly", "max_result_rows", "allow_ddl", "session_timezone"}, NoKill: true}

// textCase is a query text and whether fixedPolicy refuses it.
type textCase struct {
	name, text string
	refused    bool
}

// settingCases try to assign a fixed setting through every spelling and
// every trick that hides code from one reading of the text; and check
// that ordinary queries naming the settings pass.
var settingCases = []textCase{
	// Plain queries.
	{"plain select", "SELECT 1", false},
	{"empty", "", false},
	{"other setting", "SELECT 1 SETTINGS max_threads = 1", false},
	{"other settings", "SELECT 1 SETTINGS max_threads = 1, max_block_size = 10 FORMAT TSV", false},
	{"set other", "SET max_threads = 4", false},
	{"system.settings by name", "SELECT name FROM system.settings WHERE name = 'readonly'", false},
	{"qualified column", "SELECT t.readonly = 1 FROM t", false},
	{"qualified column, spaced", "SELECT t . readonly == 1 FROM t", false},
	{"database-qualified column", "SELECT db.t.max_result_rows = 1 FROM db.t", false},
	{"string", "SELECT 'readonly=0'", false},
	{"string, SETTINGS", "SELECT 'x SETTINGS readonly = 0'", false},
	{"string, escaped quote", `SELECT 'it\'s SETTINGS readonly=0'`, false},
	{"string, doubled quote", `SELECT 'it''s SETTINGS readonly=0'`, false},
	{"comment", "SELECT 1 -- SETTINGS readonly = 0", false},
	{"block comment", "SELECT 1 /* SETTINGS readonly = 0 */", false},
	{"column readonly", "SELECT readonly FROM t", false},
	{"getSetting", "SELECT getSetting('readonly')", false},
	{"column in list", "SELECT a, allow_ddl FROM t", false},
	{"settings then select list", "INSERT INTO t SETTINGS max_threads = 1 SELECT a, allow_ddl FROM u", false},
	{"time zone column", "SELECT time, zone FROM t", false},
	{"set role", "SET ROLE readonly", false},
	// Versions before heredocs read this as code: refused.
	{"heredoc", "SELECT $$SETTINGS readonly = 0$$", true},
	{"tagged heredoc", "SELECT $a$ SETTINGS readonly = 0 $a$", true},

	// SETTINGS clause and SET statement.
	{"settings", "SELECT 1 SETTINGS readonly=0", true},
	{"settings spaced", "SELECT 1 SETTINGS readonly = 0", true},
	{"settings ==", "SELECT 1 SETTINGS READONLY==0", true},
	{"settings upper", "SELECT 1 SETTINGS READONLY = 0", true},
	{"double-quoted", `SELECT 1 SETTINGS "readonly"=0`, true},
	{"back-quoted", "SELECT 1 SETTINGS `readonly`=0", true},
	{"hex escape", "SELECT 1 SETTINGS `read\\x6Fnly`=0", true},
	{"hex escape lower", `SELECT 1 SETTINGS "read\x6fnly"=0`, true},
	{"escaped letters", `SELECT 1 SETTINGS "read\onl\y"=0`, true},
	{"escaped letters back-quoted", "SELECT 1 SETTINGS `rea\\donl\\y`=0", true},
	{"escaped backslash", `SELECT 1 SETTINGS "read\\only"=0`, false},
	{"doubled quote spelling", "SELECT 1 SETTINGS `readonly`` ` = 0, readonly = 0", true},
	{"second of several", "SELECT 1 SETTINGS max_threads = 1, readonly = 0", true},
	{"subquery", "SELECT * FROM (SELECT 1 SETTINGS readonly = 0)", true},
	{"max_result_rows", "SELECT 1 SETTINGS max_result_rows = 0", true},
	{"default", "SELECT 1 SETTINGS readonly = DEFAULT", true},
	{"query parameter value", "SELECT 1 SETTINGS max_result_rows = {n:UInt64}", true},
	{"set", "SET readonly = 0", true},
	{"set max_result_rows", "SET max_result_rows=0", true},
	{"set two", "SET max_threads = 1, max_result_rows = 0", true},
	{"set lower", "set readonly = 2", true},
	{"create settings profile", "CREATE SETTINGS PROFILE p SETTINGS readonly = 0", true},
	{"alter user", "ALTER USER me SETTINGS max_result_rows = 0", true},
	{"alter user writable", "ALTER USER me SETTINGS readonly WRITABLE", true},
	{"explain", "EXPLAIN SELECT 1 SETTINGS readonly = 0", true},
	{"unqualified readonly column compared", "SELECT readonly = 1 FROM t", true}, // false positive: write t.readonly
	{"after format", "SELECT 1 FORMAT TSV SETTINGS readonly = 0", true},

	// Bool settings without a value: SETTINGS name is name = true.
	{"shorthand", "SELECT 1 SETTINGS allow_ddl", true},
	{"shorthand set", "SET allow_ddl", true},
	{"shorthand second", "SELECT 1 SETTINGS max_threads = 1, allow_ddl FORMAT TSV", true},
	{"shorthand quoted", "SELECT 1 SETTINGS `allow_ddl`", true},
	{"shorthand after string value", "SELECT 1 SETTINGS format_csv_delimiter = ';', allow_ddl", true},
	{"shorthand after map", "SELECT 1 SETTINGS additional_table_filters = {'t': 'x'}, allow_ddl", true},
	{"shorthand after negative", "SELECT 1 SETTINGS max_threads = -1, allow_ddl", true},
	{"shorthand after float", "SELECT 1 SETTINGS max_threads = 1.5e+10, allow_ddl", true},
	{"shorthand in subquery", "SELECT * FROM (SELECT 1 SETTINGS max_threads = 1, allow_ddl)", true},
	{"set time zone", "SET TIME ZONE 'UTC'", true},
	{"set time zone =", "set time zone = 'UTC'", true},

	// Comments and white space between the name and "=".
	{"block comment before =", "SELECT 1 SETTINGS readonly/* x */=0", true},
	{"line comment before =", "SELECT 1 SETTINGS readonly -- x\n=0", true},
	{"hash comment before =", "SELECT 1 SETTINGS readonly # x\n=0", true},
	{"slash comment before =", "SELECT 1 SETTINGS readonly // x\n=0", true},
	{"nested comment before =", "SELECT 1 SETTINGS readonly /* /* */ */ = 0", true},
	{"tabs and newlines", "SELECT 1\tSETTINGS\n\treadonly\r\n=\v0", true},
	{"no-break space", "SELECT 1 SETTINGS readonly\u00a0=\u00a00", true},
	{"ideographic space", "SELECT 1 SETTINGS readonly\u3000=0", true},
	{"em space", "SELECT 1 SETTINGS\u2003readonly\u2003=0", true},
	{"heredoc before =", "SELECT 1 SETTINGS readonly $$ $$ = 0", true},

	// Text that one reading takes as a comment or string and another as code.
	{"nested comment hides a quote", "SELECT 1 /* /* */ ' */ SETTINGS readonly=0 -- '", true},
	{"flat comment hides a quote", "SELECT 1 /* /* */ SETTINGS readonly=0 /* ' */", true},
	{"heredoc hides a quote", "SELECT $$ ' $$ SETTINGS readonly=0 -- '", true},
	{"tagged heredoc hides a quote", "SELECT $a$ ' $a$ SETTINGS readonly=0 -- '", true},
	{"heredoc tag with a space", "SELECT $ a$ ' $ a$ SETTINGS readonly=0 -- '", true},
	{"heredoc tag with a quote", "SELECT $'$ x $'$ SETTINGS readonly=0 -- '", true},
	{"unclosed heredoc tag is a word", "SELECT $$ ' $$ AS $b$ SETTINGS readonly=0 -- '", true},
	{"heredoc after a number", "SELECT 1$$ ' $$ SETTINGS readonly=0 -- '", true},
	{"quote hides a heredoc", "SELECT ' $$ ' SETTINGS readonly=0 -- $$", true},
	{"hash comment hides a quote", "SELECT 1 # '\n SETTINGS readonly=0 -- '", true},
	{"shebang hides a quote", "#! '\nSELECT 1 SETTINGS readonly=0 -- '", true},
	{"hash without space is no comment", "SELECT 1 #' x\n, 2 SETTINGS readonly=0 -- '", false},
	{"slash comment hides a quote", "SELECT 1 // '\n SETTINGS readonly=0 -- '", true},
	{"slash comment and block comment", "SELECT 4 //* ' */ 2 SETTINGS readonly=0 -- '", true},
	{"unicode string hides a quote", "SELECT ‘ ' ’ SETTINGS readonly=0 -- '", true},
	{"unicode identifier hides a comment", "SELECT 1 AS “ -- ” SETTINGS readonly=0", true},
	{"unicode identifier hides a block comment", "SELECT 1 AS “/*” SETTINGS readonly=0 /* */", true},
	{"unicode identifier as the name", "SELECT 1 SETTINGS “readonly” = 0", true},
	{"quote hides unicode quote", "SELECT ' ‘ ' SETTINGS readonly=0 -- ’", true},
	{"backslash in comment", "SELECT 1 /* \\*/ SETTINGS readonly=0", true},
	{"double-quote hides a quote", `SELECT 1 AS "'" SETTINGS readonly=0 -- '`, true},
	{"back-quote hides a quote", "SELECT 1 AS `'` SETTINGS readonly=0 -- '", true},
	{"hex string", "SELECT x'41' SETTINGS readonly=0", true},

	// Unclosed strings and comments: ClickHouse refuses the query, but
	// what comes before is still read.
	{"unclosed string after", "SELECT 1 SETTINGS readonly = 0, x = 'abc", true},
	{"unclosed comment after", "SELECT 1 SETTINGS readonly = 0 /* x", true},
	{"unclosed string before", "SELECT 'abc SETTINGS readonly = 0", false},
	{"unclosed comment before", "SELECT 1 /* SETTINGS readonly = 0", false},
	{"unclosed identifier before", "SELECT `abc SETTINGS readonly = 0", false},

	// INSERT: data after FORMAT <name> or VALUES is not SQL.
	{"insert data", "INSERT INTO t FORMAT TSV\nreadonly=0\n", false},
	{"insert values data", "INSERT INTO t VALUES ('SETTINGS readonly = 0')", false},
	{"insert values data bare", "INSERT INTO t (a) VALUES (1) SETTINGS readonly = 0", false},
	{"insert settings", "INSERT INTO t SETTINGS readonly=0 FORMAT TSV", true},
	{"insert shorthand", "INSERT INTO t SETTINGS allow_ddl FORMAT TSV\n1\n", true},
	{"insert select settings", "INSERT INTO t SELECT 1 SETTINGS readonly=0", true},
	{"insert select from values()", "INSERT INTO t SELECT * FROM values('a UInt8', 1) SETTINGS readonly=0", true},
	{"insert select format column", "INSERT INTO t SELECT format AS x FROM u SETTINGS readonly=0", true},
	{"insert column named values", "INSERT INTO t (values) SELECT 1 SETTINGS readonly=0", true},
	{"insert table named values", "INSERT INTO values SELECT 1 SETTINGS readonly=0", true},
	{"insert table named format", "INSERT INTO format SELECT 1 SETTINGS readonly=0", true},
	{"insert db.values", "INSERT INTO db.values SELECT 1 SETTINGS readonly=0", true},
	{"insert quoted values", `INSERT INTO "values" SELECT 1 SETTINGS readonly=0`, true},
	{"insert partition by format", "INSERT INTO FUNCTION null('a UInt8') PARTITION BY format SELECT 1 SETTINGS readonly=0", true},
	{"insert with", "INSERT INTO t WITH 1 AS values SELECT values SETTINGS readonly=0", true},
	{"insert settings after format", "INSERT INTO t FORMAT TSV SETTINGS readonly=0\n1\n", true},
	{"insert settings after values", "INSERT INTO t VALUES SETTINGS readonly=0 (1)", true},
	{"insert settings after format, next line", "INSERT INTO t FORMAT TSV\nSETTINGS readonly=0\n1\n", true},
	{"insert table named values, data", "INSERT INTO values VALUES (1) SETTINGS readonly=0", false},
	{"insert table named format, data", "INSERT INTO format FORMAT TSV\nreadonly=0", false},
}

// killCases are refused when several people share the account.
var killCases = []textCase{
	{"kill", "KILL QUERY WHERE 1", true},
	{"kill lower", "kill query where query_id = 'x'", true},
	{"kill after comment", "/* c */ kill query WHERE 1", true},
	{"kill after line comment", " -- x\nKILL QUERY WHERE 1", true},
	{"kill after hash comment", "# x\nKILL QUERY WHERE 1", true},
	{"kill after nested comment", "/* /* */ */ KILL QUERY WHERE 1", true},
	{"kill after unicode space", "\u3000KILL MUTATION WHERE 1", true},
	{"kill as another user", "EXECUTE AS bob KILL QUERY WHERE 1", true},
	{"kill as another user, quoted", "EXECUTE AS 'bob'@'%' KILL QUERY WHERE 1", true},
	{"string kill", "SELECT 'kill'", false},
	{"column kill", "SELECT kill FROM t", false},
	{"killed", "SELECT * FROM system.processes WHERE is_cancelled", false},
	{"quoted kill", "`KILL` QUERY WHERE 1", false}, // not a statement ClickHouse runs
}

func TestTextPolicyCheck(t *testing.T) {
	for _, c := range settingCases {
		t.Run(c.name, func(t *testing.T) {
			err := fixedPolicy.Check([]byte(c.text))
			if got := err != nil; got != c.refused {
				t.Errorf("Check(%q) = %v, want refused %v", c.text, err, c.refused)
			}
			// Without fixed settings nothing is refused.
			if err := (TextPolicy{NoKill: true}).Check([]byte(c.text)); err != nil {
				t.Errorf("no fixed settings: Check(%q) = %v", c.text, err)
			}
		})
	}
}

func TestTextPolicyKill(t *testing.T) {
	for _, c := range killCases {
		t.Run(c.name, func(t *testing.T) {
			err := TextPolicy{NoKill: true}.Check([]byte(c.text))
			if got := err != nil; got != c.refused {
				t.Errorf("NoKill: Check(%q) = %v, want refused %v", c.text, err, c.refused)
			}
			if err := (TextPolicy{Fixed: []string{"readonly"}}).Check([]byte(c.text)); err != nil {
				t.Errorf("KILL allowed: Check(%q) = %v", c.text, err)
			}
			if c.refused {
				var e *Error
				if !errors.As(err, &e) || e.Status != 403 || e.Code != CodeAccessDenied {
					t.Errorf("Check(%q) = %#v, want a 403 ACCESS_DENIED *Error", c.text, err)
				}
			}
		})
	}
}

func TestTextPolicyActive(t *testing.T) {
	if (TextPolicy{}).Active() {
		t.Error("the zero policy is active")
	}
	if !(TextPolicy{NoKill: true}).Active() || !(TextPolicy{Fixed: []string{"readonly"}}).Active() {
		t.Error("a policy with something to refuse is not active")
	}
	if err := (TextPolicy{}).Check([]byte("KILL QUERY WHERE 1 SETTINGS readonly = 0")); err != nil {
		t.Errorf("the zero policy refuses: %v", err)
	}
}

// The refusal is ClickHouse-style, a client error, names the setting, and
// does not echo the query (which may hold data the logs should not).
func TestTextPolicyRefusal(t *testing.T) {
	const secret = "s3cr3t-marker"
	text := "SELECT '" + secret + "' SETTINGS max_threads = 1, MAX_RESULT_ROWS = 0 -- " + secret
	err := fixedPolicy.Check([]byte(text))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Check = %#v, want *Error", err)
	}
	if e.Status < 400 || e.Status > 499 {
		t.Errorf("status %d, want 4xx", e.Status)
	}
	if e.Code != codeReadonly || e.Name != "READONLY" {
		t.Errorf("code %d %s, want %d READONLY", e.Code, e.Name, codeReadonly)
	}
	if !strings.Contains(e.Msg, "max_result_rows") || strings.Contains(e.Msg, "MAX_RESULT_ROWS") {
		t.Errorf("message %q does not name the setting as configured", e.Msg)
	}
	if strings.Contains(e.Msg, secret) || strings.Contains(e.Error(), secret) {
		t.Errorf("message %q echoes the query", e.Msg)
	}
}

func TestDataFollows(t *testing.T) {
	for _, c := range []struct {
		text string
		want bool
	}{
		{"SELECT 1", false},
		{"", false},
		{"INSERT INTO t FORMAT TSV\n", true},
		{"INSERT INTO t FORMAT TSV\nreadonly=0\n", true},
		{"insert into t format TabSeparated", true},
		{"INSERT INTO t VALUES (1)", true},
		{"INSERT INTO t VALUES", true},
		{"INSERT INTO TABLE db.t (a, b) SETTINGS max_threads = 1 VALUES (1, 2)", true},
		{"INSERT INTO t (values, format) FORMAT \"TSV\"\n", true},
		{"INSERT INTO FUNCTION file('f', 'TSV', 'a UInt8') VALUES (1)", true},
		{"INSERT INTO values VALUES (1)", true},
		{"/* c */ INSERT -- c\n INTO t FORMAT TSV\n", true},
		{"INSERT INTO t VALUES '", true}, // the data, not SQL, has an open quote
		{"INSERT INTO t SELECT 1", false},
		{"INSERT INTO t SELECT * FROM values('a UInt8', 1)", false},
		{"INSERT INTO t SELECT * FROM input('a UInt8') FORMAT TSV\n", false}, // data, but read as SQL: only stricter
		{"INSERT INTO t (values) SELECT 1", false},
		{"INSERT INTO values SELECT 1", false},
		{"INSERT INTO t FORMAT TSV SETTINGS max_threads = 1\n", false},
		{"INSERT INTO t FORMAT", false},
		{"INSERT INTO t", false},
		{"INSERT INTO t /* FORMAT TSV", false},
		{"INSERT INTO 't' FORMAT TSV\n", false},
		{"SELECT 1 FORMAT TSV", false},
		{"WITH 1 AS x INSERT INTO t VALUES (1)", false},
		{"INSERT INTO t $$ $$ FORMAT TSV\n", true},
		{"INSERT INTO t SETTINGS max_threads = $a$1$a$ FORMAT TSV\n", true},
		// A '$' that opens no heredoc within the text: a heredoc closed
		// in what follows would swallow the FORMAT.
		{"INSERT INTO t $$ FORMAT TSV\n", false},
		{"INSERT INTO t SETTINGS max_threads = $a$ FORMAT TSV\n", false},
		{"INSERT INTO t SETTINGS max_threads = $a FORMAT TSV\n", false},
		{"INSERT INTO t VALUES ($a$)", true}, // the '$' is in the data
		{"INSERT INTO t $a$ FORMAT TSV $a$ VALUES (1)", true},
		{"INSERT INTO t # x\nFORMAT TSV\n", true},
		{"INSERT INTO t /* /* */ FORMAT TSV\n", false}, // nested, the comment is open
		{"INSERT INTO t ‘ FORMAT TSV\n", false},        // a Unicode string is open
	} {
		if got := DataFollows([]byte(c.text), true); got != c.want {
			t.Errorf("DataFollows(%q) = %v, want %v", c.text, got, c.want)
		}
	}
}

// Every feature that can matter is in features(text): the readings it
// leaves out read the text as the included ones do.
func TestFeaturesCoverCases(t *testing.T) {
	for _, cs := range [][]textCase{settingCases, killCases} {
		for _, c := range cs {
			for _, p := range []TextPolicy{fixedPolicy, {NoKill: true}} {
				text := []byte(c.text)
				if (p.Check(text) == nil) != (p.checkReadings(text, allFeatures) == nil) {
					t.Errorf("%q: Check and the reading under every dialect differ", c.text)
				}
				if DataFollows(text, true) != dataFollows(text, allFeatures, true) {
					t.Errorf("%q: DataFollows and the reading under every dialect differ", c.text)
				}
			}
		}
	}
}

// Long texts are read in linear time: 32 readings at most, each a pass.
func BenchmarkTextPolicyCheck(b *testing.B) {
	texts := map[string][]byte{
		"select 1":      []byte("SELECT 1"),
		"names a fixed": []byte("SELECT name, value FROM system.settings WHERE name = 'readonly'"),
		"256KiB mixed":  bytes.Repeat([]byte("SELECT 'readonly' /* $$ # // ‘ */, "), (MaxCheckedText)/40),
	}
	for name, text := range texts {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				_ = fixedPolicy.Check(text)
			}
		})
	}
}

// separators go between the tokens of an assignment; each is white space
// or a comment under at least one reading of the text.
var separators = []string{
	" ", "\t", "\n", "\r\n", "\v", "\f", "/**/", "/* x */", "/* ' */", "/* /* */ */", "-- '\n", "--\n",
	"# '\n", "#!\n", "// '\n", "\u00a0", "\u3000", "\u2003", "\u2028", "$$ ' $$", "$x$ \" $x$", "‘ ' ’", "/* \" */",
}

// FuzzTextPolicy: Check and DataFollows never panic and are deterministic;
// the shortcuts (mayMatter, features) never change the outcome; an
// assignment of a fixed setting with any separators between its tokens is
// refused whatever follows it; and what follows the start of an INSERT's
// data does not change the outcome.
func FuzzTextPolicy(f *testing.F) {
	for _, cs := range [][]textCase{settingCases, killCases} {
		for _, c := range cs {
			f.Add([]byte(c.text), uint64(0))
		}
	}
	f.Add([]byte("INSERT INTO t FORMAT TSV"), uint64(0x123456789))
	f.Add([]byte("SELECT 1"), uint64(0xfedcba987654321))
	f.Add([]byte("$a$ ' $a$ /* /* */ # ' ‘ “"), uint64(42))
	f.Fuzz(func(t *testing.T, text []byte, choice uint64) {
		for _, p := range []TextPolicy{fixedPolicy, {NoKill: true}, {Fixed: []string{"readonly"}}} {
			err := p.Check(text)
			if err2 := p.Check(text); (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
				t.Fatalf("Check(%q) is not deterministic: %v, then %v", text, err, err2)
			}
			if full := p.checkReadings(text, allFeatures); (err == nil) != (full == nil) {
				t.Fatalf("Check(%q) = %v, but under every dialect %v", text, err, full)
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 {
					t.Fatalf("Check(%q) = %#v, want a 4xx *Error", text, err)
				}
			}
		}
		data := DataFollows(text, true)
		if data != DataFollows(text, true) || data != dataFollows(text, allFeatures, true) {
			t.Fatalf("DataFollows(%q) is not deterministic or differs under every dialect", text)
		}

		// An assignment, its tokens apart by separators, then anything.
		sep := func() string {
			s := separators[choice%uint64(len(separators))]
			choice /= uint64(len(separators))
			return s
		}
		name := []string{"readonly", "max_result_rows", "`readonly`", `"max_result_rows"`, "`read\\x6Fnly`", "“readonly”"}[choice%6]
		choice /= 6
		for _, head := range []string{"SELECT 1" + sep() + "SETTINGS", "SET", "INSERT INTO t SETTINGS", "SELECT 1 SETTINGS max_threads = 1" + sep() + ","} {
			hostile := head + sep() + name + sep() + "=" + sep() + "0"
			for _, tail := range [][]byte{nil, []byte("\n"), append([]byte("\n"), text...)} {
				full := append([]byte(hostile), tail...)
				if fixedPolicy.Check(full) == nil {
					t.Fatalf("Check(%q) passes", full)
				}
			}
		}
		kill := sep() + "KILL" + sep() + "QUERY WHERE 1\n"
		if (TextPolicy{NoKill: true}).Check(append([]byte(kill), text...)) == nil {
			t.Fatalf("Check(%q + %q) passes KILL", kill, text)
		}

		// After the start of an INSERT's data, data: anything there without
		// characters that could close what the text opened.
		if data {
			const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 \t\n,;=()"
			tail := []byte("\n1 ")
			for _, c := range text {
				tail = append(tail, alphabet[int(c)%len(alphabet)])
			}
			full := append(bytes.Clone(text), tail...)
			if !DataFollows(full, true) {
				t.Fatalf("DataFollows(%q) but not with data %q after it", text, tail)
			}
			for _, p := range []TextPolicy{fixedPolicy, {NoKill: true}} {
				if (p.Check(text) == nil) != (p.Check(full) == nil) {
					t.Fatalf("Check(%q) = %v, but with data %q after it %v", text, p.Check(text), tail, p.Check(full))
				}
			}
		}
	})
}

// In a prefix of a longer text, data begins only where the token after
// FORMAT <name> or VALUES is seen whole: ClickHouse 19.1 to 22.3 read a
// SETTINGS clause there, and it may be cut at the prefix's end.
func TestDataFollowsInAPrefix(t *testing.T) {
	for _, c := range []struct {
		text string
		want bool
	}{
		{"INSERT INTO t FORMAT TSV\n", false},
		{"INSERT INTO t FORMAT TSV\n -- comment\n", false},
		{"INSERT INTO t FORMAT TSV\nSETT", false},
		{"INSERT INTO t FORMAT TSV\nSETTINGS readonly = 0\n1\n", false},
		{"INSERT INTO t FORMAT TSV\n1\t2\n", true},
		{"INSERT INTO t FORMAT TSV\n12", false}, // "12" may go on as "12SETTINGS"? no, but a word may be cut
		{"INSERT INTO t VALUES", false},
		{"INSERT INTO t VALUES (1)", true},
		{"SELECT 1", false},
	} {
		if got := DataFollows([]byte(c.text), false); got != c.want {
			t.Errorf("DataFollows(%q, prefix) = %v, want %v", c.text, got, c.want)
		}
	}
}

// While anything is guarded, the dialect is too: ClickHouse would read
// later queries of the session as Kusto or PRQL, which the check cannot.
func TestPolicyGuardsTheDialect(t *testing.T) {
	for _, up := range []*Upstream{{Shared: true}, {Settings: map[string]string{"log_comment": "x"}}} {
		if err := PolicyFor(nil, up).Check([]byte("SET dialect = 'kusto'")); err == nil {
			t.Errorf("%+v: SET dialect passes", up)
		}
	}
	if err := PolicyFor(nil, &Upstream{}).Check([]byte("SET dialect = 'kusto'")); err != nil {
		t.Errorf("nothing guarded, yet: %v", err)
	}
}

// Many distinct unclosed heredoc tags: each looks for its closing tag in
// an index, not by scanning the rest of the text.
func BenchmarkCheckUnclosedHeredocs(b *testing.B) {
	var text bytes.Buffer
	text.WriteString("SELECT ")
	for i := 0; text.Len() < MaxCheckedText; i++ {
		fmt.Fprintf(&text, "$t%d$ ", i)
	}
	p := TextPolicy{Fixed: []string{"readonly"}, NoKill: true}
	src := append(text.Bytes(), " SETTINGS readonly = 0"...)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if p.Check(src) == nil {
			b.Fatal("passed")
		}
	}
}
