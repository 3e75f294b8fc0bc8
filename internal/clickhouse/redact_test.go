package clickhouse

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"SELECT 1", "SELECT ?"},
		{"SELECT * FROM t1 WHERE a = 'secret' LIMIT 10", "SELECT * FROM t1 WHERE a = ? LIMIT ?"},
		// Digits in names stay; numbers of every spelling go.
		{"SELECT col2, `col3`, \"4col\", t1.c5 FROM db2.t6", "SELECT col2, `col3`, \"4col\", t1.c5 FROM db2.t6"},
		{"SELECT 1.5, 1.5e-3, 1E+10, 2e5, 0x1F, 0xdeadBEEF, 0b101, 1_000_000, .5, 1., 0x1p-3, inf, nan, -7", "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, inf, nan, -?"},
		{"SELECT t.1, x.2.3, arr[4], a+5-6*7/8%9", "SELECT t.?, x.?, arr[?], a+?-?*?/?%?"},
		{"SELECT 1e-x", "SELECT ?-x"},
		// Strings: escapes, doubled quotes, backslash at the end.
		{`SELECT 'it''s', 'it\'s', 'a\\', '\x41', ''`, "SELECT ?, ?, ?, ?, ?"},
		{`SELECT 'a' 'b', x'4142', b'01', 'a'||'b'`, "SELECT ? ?, x?, b?, ?||?"},
		// Heredocs, of every tag.
		{"SELECT $$secret$$, $a$secret$a$, $tag_1$x$tag_1$", "SELECT ?, ?, ?"},
		// Unicode quotes: ‘string’ goes, “identifier” stays.
		{"SELECT ‘secret’ AS “name”", "SELECT ? AS “name”"},
		// Comments go, with what they hold.
		{"SELECT 1 -- secret\n, 2 # secret\n, 3 #!secret\n, 4 // secret\n FROM t /* secret */", "SELECT ? , ? , ? , ? FROM t"},
		{"/* lead */ SELECT/**/a/* /* nested */ */FROM t", "SELECT a FROM t"},
		{"SELECT 1 -- comment at the end", "SELECT ?"},
		// Unclosed: a literal or comment to the end.
		{"SELECT 'secret", "SELECT ?"},
		{"SELECT $a$secret", "SELECT $a$secret"}, // no heredoc: $a$secret is a word
		{`SELECT "unclosed name`, "SELECT ?"},
		{"SELECT `unclosed", "SELECT ?"},
		{"SELECT ‘secret", "SELECT ?"},
		{"SELECT 1 /* secret", "SELECT ?"},
		{"SELECT 1 /* /* */ secret", "SELECT ?"}, // an unclosed comment when nested; secret is "?" in the other reading
		// A text that versions read differently: whatever one reading has
		// in a string or comment is "?".
		{"SELECT 1 /* /* */ ' */ secret '", "SELECT ? ? ?"},
		{"SELECT 1 /* /* */ secret */ , 2", "SELECT ? , ?"},
		{"SELECT $$ secret $$", "SELECT ?"},
		{"SELECT 1 # secret\n", "SELECT ?"},
		{"SELECT 1 #secret", "SELECT ? #secret"}, // '#' then a word starts no comment
		{"SELECT 4 //* secret */ 2", "SELECT ?"},
		{"SELECT a // secret\n", "SELECT a"},
		{"SELECT ‘ secret ’", "SELECT ?"},
		{"SELECT “name” -- ”", "SELECT “name”"}, // a name in every reading
		{"SELECT $x$ ' $x$ secret '", "SELECT ? ? ?"},
		{"SELECT $x$ 'secret $x$ more secret'", "SELECT ? ? ??"},
		{"SELECT #\n'x' # y\n", "SELECT #\t?"}, // no space after '#', which would start a comment
		// Structure stays.
		{"INSERT INTO db.t (a, b) VALUES (1, 'x'), (2, 'y')", "INSERT INTO db.t (a, b) VALUES (?, ?), (?, ?)"},
		{"SELECT a FROM t WHERE b IN (1, 2) AND c == 'x' SETTINGS max_threads = 4 FORMAT JSON", "SELECT a FROM t WHERE b IN (?, ?) AND c == ? SETTINGS max_threads = ? FORMAT JSON"},
		{"SELECT\n\t a\r\n  FROM\tt", "SELECT a FROM t"},
		{"SELECT {name:String}", "SELECT {name:String}"},
		// Arbitrary bytes: non-ASCII outside names is white space, as for
		// the lexer; invalid UTF-8 in a kept name is replaced.
		{"\xff\xfe SELECT `a\xffb` \u00a0 x", "SELECT `a\uFFFDb` x"},
		{"SELECT é, 'é'", "SELECT , ?"},
		{"\x00'\x00'", "\x00?"},
		// Found by FuzzRedact: "$0" ends a word that every reading has
		// ("A$000$$$0" without heredocs), so it stays; alone, it is
		// "$" then the number 0 without heredocs.
		{"0#00000$$A$000$$$0", "?#??$0"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q)\n = %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestStatementKind(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "",
		"   ":               "",
		"-- only a comment": "",
		"select 1":          "SELECT",
		"  /* c */ -- c\n ((SELECT 1)) UNION ALL (SELECT 2)": "SELECT",
		"WITH 1 AS x SELECT x":                               "SELECT",
		"with x as (select 1) select * from x":               "SELECT",
		"EXPLAIN SELECT 1":                                   "EXPLAIN",
		"EXPLAIN AST INSERT INTO t VALUES":                   "EXPLAIN",
		"INSERT INTO t VALUES (1)":                           "INSERT",
		"create table t (x UInt8) engine = Memory":           "CREATE",
		"CREATE OR REPLACE VIEW v AS SELECT 1":               "CREATE",
		"REPLACE TABLE t AS SELECT 1":                        "CREATE",
		"ALTER TABLE t DELETE WHERE 1":                       "ALTER",
		"DROP TABLE t":                                       "DROP",
		"desc t":                                             "DESCRIBE",
		"DESCRIBE TABLE t":                                   "DESCRIBE",
		"SHOW TABLES":                                        "SHOW",
		"SET max_threads = 1":                                "SET",
		"KILL QUERY WHERE 1":                                 "KILL",
		"SYSTEM FLUSH LOGS":                                  "SYSTEM",
		"OPTIMIZE TABLE t FINAL":                             "OPTIMIZE",
		"GRANT SELECT ON *.* TO u":                           "GRANT",
		"TRUNCATE t":                                         "TRUNCATE",
		"USE db":                                             "USE",
		"EXECUTE AS alice SELECT 1":                          "SELECT",
		"EXECUTE AS `al ice` KILL QUERY WHERE 1":             "KILL",
		"EXECUTE AS alice":                                   "EXECUTE",
		"# c\nSELECT 1":                                      "SELECT",
		"// c\nINSERT INTO t FORMAT TSV":                     "INSERT",
		"/* /* */ SELECT 1 */ DROP TABLE t":                  "DROP",   // read as today's ClickHouse: nested comments
		"$$x$$ SELECT":                                       "SELECT", // literals are skipped too
		"'SELECT'":                                           "",
		"`SELECT` 1":                                         "",
		"1":                                                  "",
		"frobnicate the table":                               "",
		"(":                                                  "",
		"\xff\xfeSELECT 1":                                   "SELECT",
	} {
		if got := StatementKind(in); got != want {
			t.Errorf("StatementKind(%q) = %q, want %q", in, got, want)
		}
	}
}

// The pieces of a text are next's tokens, numbers grouped: skipPiece
// skips what next skips, in every reading.
func TestPiecesFollowNext(t *testing.T) {
	texts := hostileCorpus(3000)
	for _, c := range redactCases() {
		text, _ := c.normalize()
		texts = append(texts, text, c.prefix+c.secret+c.suffix)
	}
	for _, text := range texts {
		src := []byte(text)
		for i, d := range dialects {
			if skipDialect(i, allFeatures) {
				continue
			}
			var want []token
			for l := (lexer{src: src, dialect: d}); ; {
				tok, ok := l.next()
				if !ok {
					break
				}
				want = append(want, tok)
			}
			var got []token
			at := 0
			l := lexer{src: src, dialect: d}
			l.pieces(func(p piece) {
				if p.start != at || p.end <= p.start {
					t.Errorf("dialect %d: %q: piece [%d,%d) after %d", i, text, p.start, p.end, at)
				}
				at = p.end
				switch {
				case p.kind == pieceCode:
					got = append(got, p.tok)
				case p.tok.text != "": // a number: next's tokens of its text
					if isNumber := p.tok.word && isDigit(p.tok.text[0]) || p.tok.text == "."; !isNumber {
						t.Errorf("dialect %d: %q: token %q is not where next reads it", i, text, p.tok.text)
					}
					for nl := (lexer{src: src[:p.end], pos: p.start, dialect: d}); ; {
						tok, ok := nl.next()
						if !ok {
							break
						}
						got = append(got, tok)
					}
				}
			})
			if at != len(src) {
				t.Errorf("dialect %d: %q: pieces end at %d of %d", i, text, at, len(src))
			}
			// next stops at an unclosed string or comment; pieces goes on
			// with a literal, so it may have more tokens, not others.
			if len(got) < len(want) || fmt.Sprint(got[:len(want)]) != fmt.Sprint(want) {
				t.Errorf("dialect %d: %q:\npieces %v\nnext   %v", i, text, got, want)
			}
		}
	}
}

// Redact never panics and writes valid UTF-8; and for these texts,
// redacting the output again changes nothing. That does not hold for
// every text: the output is read without the comments and literals that
// were around its tokens (see "$0" in TestRedact).
func TestRedactCorpus(t *testing.T) {
	for _, text := range hostileCorpus(3000) {
		out := Redact(text)
		if !utf8.ValidString(out) {
			t.Errorf("Redact(%q) = %q: invalid UTF-8", text, out)
		}
		if again := Redact(out); again != out {
			t.Errorf("Redact(%q) = %q, redacted again %q", text, out, again)
		}
	}
}

// A redactCase is a secret written as a literal (or comment) of one form,
// between a prefix and a suffix of code.
type redactCase struct {
	prefix, suffix, secret string
	form                   uint8
}

// Forms of literal and comment that hold a secret.
const (
	formQuoted       = iota // 'secret', escaped with \' and \\
	formDoubled             // 'secret', escaped with '' and \\
	formHeredoc             // $tag$secret$tag$
	formInt                 // the secret's bytes as digits
	formFloat               // 1.<digits>e-7
	formHex                 // 0x<hex digits>
	formBlockComment        // /* secret */
	formLineComment         // -- secret
	formHashComment         // # secret
	formSlashComment        // // secret
	formUnicode             // ‘secret’
	formCount
)

// normalize makes c a case whose secret is a literal or a comment in
// some reading: the prefix and suffix hold no quote (which could open a
// string or a name around the secret) and no non-ASCII byte, nor, before
// a heredoc, any '$'; the secret fits its form. It returns the text and
// the secret as it stands in it (escaped, or as digits).
func (c redactCase) normalize() (text, body string) {
	clean := func(s string, dollar bool) string {
		return strings.Map(func(r rune) rune {
			if r == '\'' || r == '"' || r == '`' || r >= utf8.RuneSelf || r == '$' && !dollar {
				return ' '
			}
			return r
		}, s)
	}
	c.form %= formCount
	prefix, suffix := clean(c.prefix, c.form != formHeredoc), clean(c.suffix, true)
	s := c.secret
	digits := func(hex bool) string {
		var b strings.Builder
		for i := range len(s) {
			if hex {
				b.WriteByte("0123456789abcdef"[s[i]%16])
			} else {
				b.WriteByte('0' + s[i]%10)
			}
		}
		return b.String()
	}
	var open, close string
	switch c.form {
	case formQuoted:
		open, close, body = "'", "'", strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
	case formDoubled:
		open, close, body = "'", "'", strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s)
	case formHeredoc:
		tag := "$q$"
		for i := 0; strings.Contains(s, tag) || strings.HasSuffix(s, tag[:len(tag)-1]); i++ {
			tag = fmt.Sprintf("$q%d$", i)
		}
		open, close, body = tag, tag, s
	case formInt:
		body = digits(false)
		if body == "" {
			body = "0"
		}
	case formFloat:
		open, close, body = "1.", "e-7", digits(false)
	case formHex:
		open, body = "0x", digits(true)
		if body == "" {
			body = "0"
		}
	case formBlockComment:
		open, close, body = "/*", "*/", strings.ReplaceAll(s, "*/", "* /")
		if strings.HasSuffix(body, "*") || strings.HasPrefix(body, "/") {
			body = " " + body + " "
		}
	case formLineComment, formHashComment, formSlashComment:
		open = map[uint8]string{formLineComment: "--", formHashComment: "# ", formSlashComment: "//"}[c.form]
		close, body = "\n", strings.ReplaceAll(s, "\n", " ")
	case formUnicode:
		open, close, body = "‘", "’", strings.ReplaceAll(s, "\xE2", "x")
	}
	return prefix + " " + open + body + close + " " + suffix, body
}

// leaks returns the text of c and whether redact's output of it holds the
// secret, or a byte that only the secret has; checked is false where the
// secret could stand in the output for another reason: shorter than 4
// bytes, or in the text more than once, or made only of bytes that the
// rest of the text, '?' and white space have.
func (c redactCase) leaks(redact func(string) string) (text string, checked, leaked bool) {
	text, body := c.normalize()
	if len(body) < 4 || strings.Count(text, body) != 1 {
		return text, false, false
	}
	rest := strings.Replace(text, body, "", 1) + "? \t\uFFFD"
	var own []byte // bytes of the secret that the output can have from it only
	for i := range len(body) {
		if strings.IndexByte(rest, body[i]) < 0 {
			own = append(own, body[i])
		}
	}
	if len(own) == 0 {
		return text, false, false
	}
	out := redact(text)
	if strings.Contains(out, body) {
		return text, true, true
	}
	// Without a closer of a comment that the prefix may open, the secret
	// is a literal or comment in one reading (for a quoted string, the
	// reading without any feature): no byte of it may be left.
	if !strings.Contains(body, "*/") && !strings.Contains(body, "\n") {
		return text, true, strings.ContainsAny(out, string(own))
	}
	return text, true, false
}

func redactCases() []redactCase {
	prefixes := []string{"SELECT * FROM t WHERE a =", "SELECT", "INSERT INTO t VALUES (1,", "SELECT 1 /* /* */", "SELECT $a$", "SELECT 1 #",
		"SELECT 1 //", "SELECT 1 --", "SELECT x AS $$", "SELECT f(", "SELECT 1 /*", "SELECT 4 //*", "SELECT a.", "SELECT -", "SELECT $ a$"}
	suffixes := []string{"", "AND b = 1", "*/ FROM t", "$a$", ")", "-- x", "\n*/ , 2", "$$", "FORMAT TSV", "$ a$ x"}
	secrets := []string{"hunter2", "xx$a$yy-after", "xx$$yy-after", "u$ a$v", "s3cr3t-pass", "it's a \\ secret", "*/ closes /* opens", "$q$ tag $q", "line\nbreak", "‘quoted’",
		"9876543210", "ünïcødé pw", "SELECT", "\xff\xfe bytes", "a'b''c\\'d"}
	var cs []redactCase
	for i, p := range prefixes {
		for j, s := range suffixes {
			for k, secret := range secrets {
				cs = append(cs, redactCase{p, s, secret, uint8(i + j + k)})
			}
		}
	}
	return cs
}

// The secret of each case is not in Redact's output; and the check can
// fail: it catches redactors that miss literals.
func TestRedactHidesSecrets(t *testing.T) {
	naive := regexp.MustCompile(`'[^']*'`)
	redactors := map[string]func(string) string{
		"identity":       func(s string) string { return s },
		"'…' only":       func(s string) string { return naive.ReplaceAllString(s, "?") },
		"one reading":    func(s string) string { return redactOneReading(s) },
		"Redact":         Redact,
		"Redact, spaced": func(s string) string { return Redact(" " + s + " ") },
	}
	cases := redactCases()
	for name, redact := range redactors {
		checked, leaked := 0, 0
		for _, c := range cases {
			text, ok, leak := c.leaks(redact)
			if ok {
				checked++
			}
			if leak {
				leaked++
				if strings.HasPrefix(name, "Redact") {
					t.Errorf("%s(%q) = %q: the secret is there", name, text, redact(text))
				}
			}
		}
		t.Logf("%s: %d of %d cases checked, %d leaked", name, checked, len(cases), leaked)
		if checked < len(cases)*3/4 {
			t.Errorf("%s: only %d of %d cases checked", name, checked, len(cases))
		}
		if !strings.HasPrefix(name, "Redact") && leaked == 0 {
			t.Errorf("%s: no case leaked: the check cannot fail", name)
		}
	}
}

// redactOneReading is Redact with the reading of today's ClickHouse only,
// which misses what older versions read as literals.
func redactOneReading(sql string) string {
	src := []byte(sql)
	var b strings.Builder
	l := lexer{src: src, dialect: dialects[features(src)]}
	l.pieces(func(p piece) {
		switch p.kind {
		case pieceSpace, pieceComment:
			b.WriteByte(' ')
		case pieceLiteral:
			b.WriteByte('?')
		default:
			b.Write(src[p.start:p.end])
		}
	})
	return b.String()
}

func FuzzRedact(f *testing.F) {
	for _, c := range redactCases() {
		f.Add(c.prefix, c.suffix, c.secret, c.form)
	}
	f.Fuzz(func(t *testing.T, prefix, suffix, secret string, form uint8) {
		// Any text: no panic, valid UTF-8. (Redacting the output again
		// may change it: see "$0" in TestRedact.)
		for _, s := range []string{prefix, prefix + secret + suffix} {
			if out := Redact(s); !utf8.ValidString(out) {
				t.Errorf("Redact(%q) = %q: invalid UTF-8", s, out)
			}
			StatementKind(s)
		}
		c := redactCase{prefix, suffix, secret, form}
		if text, _, leaked := c.leaks(Redact); leaked {
			t.Errorf("Redact(%q) = %q: the secret is there", text, Redact(text))
		}
	})
}
