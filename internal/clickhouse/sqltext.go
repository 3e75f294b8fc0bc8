package clickhouse

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/clickgate/clickgate/internal/chsql"
)

// TextPolicy is what a query text may not do through clickgate: assign a
// setting that clickgate fixes for the person (in a SETTINGS clause or a
// SET statement), or KILL queries on an account that several people
// share. Settings that arrive by URL, header or form are handled where
// they arrive; SQL is the channel clickgate cannot rewrite, so it refuses.
type TextPolicy struct {
	// Fixed are setting names the text may not assign (lower case).
	Fixed []string
	// NoKill refuses KILL statements: on a shared account ClickHouse lets
	// each person cancel the others' queries.
	NoKill bool
}

// PolicyFor is what the SQL sent for up may not do: assign the fixed
// settings (clickhouse.settings) or the mode's (service mode's
// log_comment), switch profile, or KILL on a shared account; nor, while
// any of that holds, change the dialect that later queries are read in.
func PolicyFor(fixed map[string]string, up *Upstream) TextPolicy {
	p := TextPolicy{NoKill: up.Shared}
	for _, set := range []map[string]string{fixed, up.Settings} {
		for k := range set {
			p.Fixed = append(p.Fixed, strings.ToLower(k))
		}
	}
	if len(p.Fixed) > 0 {
		// Both change other settings wholesale or after the fact.
		p.Fixed = append(p.Fixed, "profile", "allow_settings_after_format_in_insert")
	}
	if p.Active() {
		p.Fixed = append(p.Fixed, GuardedDialect)
	}
	return p
}

// GuardedDialect is the setting that makes ClickHouse read queries as
// another language (kusto, prql), which clickgate's check cannot read.
const GuardedDialect = "dialect"

// Active reports whether the policy refuses anything.
func (p TextPolicy) Active() bool { return len(p.Fixed) > 0 || p.NoKill }

// MaxCheckedText is the longest query text that CheckText reads: ClickHouse's
// default max_query_size. ClickHouse refuses longer query texts anyway
// unless max_query_size was raised; the data of an INSERT may follow.
const MaxCheckedText = 256 << 10

// Check refuses text that breaks p under any way a ClickHouse version may
// read it. ClickHouse's lexers differ between versions (nested comments,
// '#' comments, heredoc strings); a text that one version reads as code
// and another as a comment or string is read every way, and refused when
// any reading breaks the policy.
func (p TextPolicy) Check(text []byte) error {
	if !p.mayMatter(text) {
		return nil
	}
	return p.checkReadings(text, features(text))
}

// checkReadings is Check under the dialects that use no feature outside mask.
func (p TextPolicy) checkReadings(text []byte, mask int) error {
	for i, d := range dialects {
		if skipDialect(i, mask) {
			continue
		}
		lx := lexer{src: text, dialect: d}
		toks, _ := lx.statement()
		if err := p.check(toks); err != nil {
			return err
		}
	}
	return nil
}

// DataFollows reports whether text is an INSERT whose data (after FORMAT
// <name> or VALUES) begins within it under every reading: what follows
// the text is then data, never SQL. A '$' before the data that opens no
// heredoc closed within text makes it false: ClickHouse looks ahead for
// the closing tag, and what follows could hold one. complete says text
// is all there is; else it is a prefix, and the first token of the data
// must lie whole within it, for ClickHouse 19.1 to 22.3 read a SETTINGS
// clause there.
func DataFollows(text []byte, complete bool) bool {
	return dataFollows(text, features(text), complete)
}

func dataFollows(text []byte, mask int, complete bool) bool {
	for i, d := range dialects {
		if skipDialect(i, mask) {
			continue
		}
		lx := lexer{src: text, dialect: d, prefix: !complete}
		if _, ok := lx.statement(); !ok || lx.openDollar {
			return false
		}
	}
	return true
}

// mayMatter is a fast test that text cannot break p: it names none of
// the fixed settings and no KILL, and has no escapes that could spell one.
func (p TextPolicy) mayMatter(text []byte) bool {
	if bytes.IndexByte(text, '\\') >= 0 {
		return true
	}
	if p.NoKill && containsFold(text, "kill") {
		return true
	}
	for _, name := range p.Fixed {
		if containsFold(text, name) {
			return true
		}
		// SET TIME ZONE 'tz' is SET session_timezone = 'tz'.
		if name == "session_timezone" && containsFold(text, "zone") {
			return true
		}
	}
	return false
}

func (p TextPolicy) check(toks []token) error {
	if p.NoKill && isKill(toks) {
		return refuse(http.StatusForbidden, CodeAccessDenied, "ACCESS_DENIED", "KILL is refused on a ClickHouse account that several people share: it would reach their queries too; "+
			"cancel your own query by closing its connection")
	}
	// A setting is assigned by "name =" anywhere, and, in the list after
	// SET or SETTINGS, by its bare name too: ClickHouse reads "SETTINGS
	// name" as name = true for a Bool setting.
	inList, expectName := false, false
	depth, listDepth := 0, 0
	for i, t := range toks {
		if !t.word {
			switch t.text {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				depth--
				if depth < listDepth {
					inList = false
				}
			case ",":
				if inList && depth == listDepth {
					expectName = true
					continue
				}
			}
		}
		afterDot := i > 0 && !toks[i-1].word && toks[i-1].text == "."
		if t.word && !afterDot && (expectName || i+1 < len(toks) && toks[i+1].eq) {
			name := t.text
			if expectName && t.keyword("TIME") && i+1 < len(toks) && toks[i+1].keyword("ZONE") {
				name = "session_timezone" // SET TIME ZONE 'tz'
			}
			for _, fixed := range p.Fixed {
				if strings.EqualFold(name, fixed) {
					return refuse(http.StatusBadRequest, codeReadonly, "READONLY", fmt.Sprintf("the setting %s is fixed for you by clickgate and may not be set in the query (SETTINGS or SET); "+
						"leave it out (a column of that name can be written as table.%s)", fixed, fixed))
				}
			}
		}
		switch {
		case t.keyword("SET") || t.keyword("SETTINGS"):
			inList, expectName, listDepth = true, true, depth
			continue
		case inList && depth == listDepth && t.word && !expectName && i > 0 && (toks[i-1].word || closes(toks[i-1])):
			inList = false // two operands in a row: the list has ended
		}
		expectName = false
	}
	return nil
}

// isKill reports a KILL statement, also one run as another user
// (EXECUTE AS name KILL …, ClickHouse 25.11 on).
func isKill(toks []token) bool {
	if len(toks) > 0 && toks[0].keyword("KILL") {
		return true
	}
	if len(toks) > 2 && toks[0].keyword("EXECUTE") && toks[1].keyword("AS") {
		for _, t := range toks[2:min(len(toks), 7)] {
			if t.keyword("KILL") {
				return true
			}
		}
	}
	return false
}

func closes(t token) bool { return !t.word && (t.text == ")" || t.text == "]" || t.text == "}") }

// codeReadonly is ClickHouse's "Cannot modify setting in readonly mode".
const codeReadonly = 164

func refuse(status, code int, name, msg string) *Error {
	return &Error{Status: status, Code: code, Name: name, Msg: "clickgate: " + msg}
}

// containsFold reports whether s contains sub (lower-case ASCII) in any
// case: a search for its first byte in both cases, then a compare.
func containsFold(s []byte, sub string) bool {
	if sub == "" {
		return true
	}
	lo, up := sub[0], sub[0]
	if lo >= 'a' && lo <= 'z' {
		up = lo - 'a' + 'A'
	}
	for i := 0; i+len(sub) <= len(s); {
		j := indexEither(s[i:len(s)-len(sub)+1], lo, up)
		if j < 0 {
			return false
		}
		i += j
		if bytes.EqualFold(s[i:i+len(sub)], []byte(sub)) {
			return true
		}
		i++
	}
	return false
}

// indexEither is the first index of a or b in s, or -1.
func indexEither(s []byte, a, b byte) int {
	i := bytes.IndexByte(s, a)
	if a == b {
		return i
	}
	before := s
	if i >= 0 {
		before = s[:i]
	}
	if j := bytes.IndexByte(before, b); j >= 0 {
		return j
	}
	return i
}

// dialect is one way of reading SQL text; ClickHouse versions differ.
type dialect struct {
	nestedComments bool // /* /* */ */ is one comment
	hashComments   bool // "# " and "#!" start a line comment
	heredoc        bool // $tag$ … $tag$ is a string
	wordTags       bool // a heredoc tag is word characters (25.8 on), not anything up to the next '$' (21.9 to 25.7)
	slashComments  bool // "//" starts a line comment
	unicodeQuotes  bool // ‘string’ and “identifier”
}

// Features of a dialect, as bits of its index in dialects.
const (
	featNested = 1 << iota
	featHash
	featHeredoc
	featWordTags
	featSlash
	featUnicode
	allFeatures = 1<<iota - 1
)

var dialects = func() []dialect {
	var ds []dialect
	for i := range allFeatures + 1 {
		ds = append(ds, dialect{nestedComments: i&featNested != 0, hashComments: i&featHash != 0, heredoc: i&featHeredoc != 0,
			wordTags: i&featWordTags != 0, slashComments: i&featSlash != 0, unicodeQuotes: i&featUnicode != 0})
	}
	return ds
}()

// skipDialect reports a dialect that uses a feature outside mask, or
// that repeats another (word tags without heredocs).
func skipDialect(i, mask int) bool {
	return i&^mask != 0 || i&featWordTags != 0 && i&featHeredoc == 0
}

// features returns the dialect features that can matter for text: a
// text without a feature's opening characters reads the same either way.
func features(text []byte) int {
	var mask int
	if bytes.Contains(text, []byte("/*")) {
		mask |= featNested
	}
	if bytes.IndexByte(text, '#') >= 0 {
		mask |= featHash
	}
	if bytes.IndexByte(text, '$') >= 0 {
		mask |= featHeredoc | featWordTags
	}
	if bytes.Contains(text, []byte("//")) {
		mask |= featSlash
	}
	if bytes.Contains(text, []byte("\xE2\x80\x98")) || bytes.Contains(text, []byte("\xE2\x80\x9C")) {
		mask |= featUnicode
	}
	return mask
}

// token is a code token: a word (bare or quoted identifier, keyword,
// number), an "=" or "==" (eq), or another character.
type token struct {
	text   string
	word   bool
	quoted bool // a quoted identifier, never a keyword
	eq     bool
}

// keyword reports whether t is the bare word kw (in any case).
func (t token) keyword(kw string) bool {
	return t.word && !t.quoted && strings.EqualFold(t.text, kw)
}

type lexer struct {
	src []byte
	pos int
	dialect
	openDollar bool // a '$' opened no heredoc closed within src
	// prefix: src is the start of a longer text; data begins only where
	// the token after it is seen whole.
	prefix bool
	// heredocs indexes where each heredoc tag stands, built on first use.
	heredocs map[string][]int
}

// statement returns the code tokens of the text, stopping where an
// INSERT's data begins (after FORMAT <name> or VALUES), and whether it did.
//
// Data begins only at the VALUES or FORMAT <name> that ends the head of
// the INSERT (INSERT INTO [TABLE] name [(columns)] [SETTINGS …]): not
// inside brackets (columns, table functions), not where a table name
// stands, and never once SELECT, WITH, WATCH or PARTITION BY came (an
// INSERT … SELECT has no data; values() is a table function there).
// Where SETTINGS follows, some versions read it as settings
// (allow_settings_after_format_in_insert), so reading goes on.
func (l *lexer) statement() ([]token, bool) {
	var toks []token
	insert, noData := false, false
	depth := 0
	for {
		t, ok := l.next()
		if !ok {
			return toks, false
		}
		toks = append(toks, t)
		n := len(toks)
		if n == 1 {
			insert = t.keyword("INSERT")
		}
		if !insert || noData {
			continue
		}
		switch {
		case !t.word && (t.text == "(" || t.text == "[" || t.text == "{"):
			depth++
		case closes(t):
			depth--
		case t.keyword("SELECT") || t.keyword("WITH") || t.keyword("WATCH") || t.keyword("PARTITION"):
			noData = true
			continue
		}
		if depth != 0 {
			continue
		}
		values := t.keyword("VALUES") && !namePosition(toks[:n-1])
		format := n >= 3 && t.word && toks[n-2].keyword("FORMAT") && !namePosition(toks[:n-2])
		if !values && !format {
			continue
		}
		at, open := l.pos, l.openDollar
		next, ok := l.next()
		if ok && next.keyword("SETTINGS") {
			toks = append(toks, next)
			noData = true
			continue
		}
		if l.prefix && (!ok || l.pos >= len(l.src)) {
			return toks, false // the next token, maybe SETTINGS, is not whole here
		}
		l.pos, l.openDollar = at, open
		return toks, true
	}
}

// namePosition reports whether the token after toks names a table (or a
// database, or a table function) in an INSERT: a word there is no keyword.
func namePosition(toks []token) bool {
	if len(toks) == 0 {
		return true
	}
	p := toks[len(toks)-1]
	return p.keyword("INTO") || p.keyword("TABLE") || p.keyword("FUNCTION") || !p.word && p.text == "."
}

// next returns the next code token, skipping white space, comments and
// string literals; ok is false at the end of the text (or inside an
// unclosed string or comment, which ClickHouse refuses).
func (l *lexer) next() (token, bool) {
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			l.pos++
		case c == 0xE2 && l.unicodeQuotes && l.pos+5 < len(l.src) && l.src[l.pos+1] == 0x80 && (l.src[l.pos+2] == 0x98 || l.src[l.pos+2] == 0x9C):
			// ‘string’ or “identifier”: no escapes, closed by ’ or ”.
			open := l.src[l.pos+2]
			text, ok := l.unicodeQuoted(open + 1)
			if !ok {
				return token{}, false
			}
			if open == 0x9C {
				return token{text: text, word: true, quoted: true}, true
			}
		case c >= utf8.RuneSelf:
			// Non-ASCII: ClickHouse skips Unicode white space; treating
			// every such rune as space can only join a setting name to
			// its "=", never hide one.
			_, n := utf8.DecodeRune(l.src[l.pos:])
			l.pos += n
		case c == '-' && l.peek(1) == '-':
			l.skipLine()
		case c == '#' && l.hashComments && (l.peek(1) == ' ' || l.peek(1) == '!'):
			l.skipLine()
		case c == '/' && l.slashComments && l.peek(1) == '/':
			l.skipLine()
		case c == '/' && l.peek(1) == '*':
			if !l.skipBlockComment() {
				return token{}, false
			}
		case c == '\'':
			if _, ok := l.quoted('\''); !ok {
				return token{}, false
			}
		case c == '`' || c == '"':
			text, ok := l.quoted(c)
			if !ok {
				return token{}, false
			}
			return token{text: text, word: true, quoted: true}, true
		case c == '$' && l.heredoc:
			// As ClickHouse: $tag$ is a string up to the next $tag$;
			// without one, a lone '$' or a word.
			if end := l.heredocEnd(); end > 0 {
				l.pos = end
				continue
			}
			l.openDollar = true
			if l.pos+1 == len(l.src) || !isWordByte(l.src[l.pos+1]) {
				l.pos++
				return token{text: "$"}, true
			}
			return l.word(), true
		case isWordByte(c):
			return l.word(), true
		case c == '=':
			l.pos++
			if l.peek(0) == '=' {
				l.pos++
			}
			return token{text: "=", eq: true}, true
		default:
			l.pos++
			return token{text: string(c)}, true
		}
	}
	return token{}, false
}

// word reads a bare word: letters, digits, '_' and '$', as ClickHouse,
// which ends a number (a word starting with a digit) before a '$'.
func (l *lexer) word() token {
	start := l.pos
	number := isDigit(l.src[start])
	l.pos++
	for l.pos < len(l.src) && (isWordByte(l.src[l.pos]) || l.src[l.pos] == '$' && !number) {
		l.pos++
	}
	return token{text: string(l.src[start:l.pos]), word: true}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (l *lexer) peek(off int) byte {
	if l.pos+off < len(l.src) {
		return l.src[l.pos+off]
	}
	return 0
}

func (l *lexer) skipLine() {
	if i := bytes.IndexByte(l.src[l.pos:], '\n'); i >= 0 {
		l.pos += i + 1
		return
	}
	l.pos = len(l.src)
}

func (l *lexer) skipBlockComment() bool {
	depth := 0
	for l.pos+1 < len(l.src) {
		switch {
		case l.src[l.pos] == '/' && l.src[l.pos+1] == '*':
			if depth == 0 || l.nestedComments {
				depth++
			}
			l.pos += 2
		case l.src[l.pos] == '*' && l.src[l.pos+1] == '/':
			depth--
			l.pos += 2
			if depth == 0 {
				return true
			}
		default:
			l.pos++
		}
	}
	l.pos = len(l.src)
	return false
}

// quoted reads a string or quoted identifier closed by q, with backslash
// escapes and doubled quotes, and returns its decoded text.
func (l *lexer) quoted(q byte) (string, bool) {
	var b strings.Builder
	l.pos++
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == '\\' && l.pos+1 < len(l.src):
			d, n := chsql.Unescape(l.src[l.pos+1:])
			b.WriteByte(d)
			l.pos += 1 + n
		case c == q && l.peek(1) == q:
			b.WriteByte(q)
			l.pos += 2
		case c == q:
			l.pos++
			return b.String(), true
		default:
			b.WriteByte(c)
			l.pos++
		}
	}
	return "", false
}

// heredocEnd returns where the heredoc opening at l.pos ends, or 0 if
// there is none: as in ClickHouse its tag runs from the '$' to the next
// '$' (over word characters only, from 25.8 on), and it ends after the
// next copy of the tag.
func (l *lexer) heredocEnd() int {
	rest := l.src[l.pos:]
	i := 1
	if l.wordTags {
		for i < len(rest) && isWordByte(rest[i]) {
			i++
		}
		if i == len(rest) || rest[i] != '$' {
			return 0
		}
	} else if i += bytes.IndexByte(rest[1:], '$'); i == 0 {
		return 0
	}
	tag := rest[:i+1]
	// The closing tag is the first later '$' whose own tag is the same
	// (a tag holds no '$' inside): found in an index of all tags, so that
	// many distinct unclosed tags cost n log n, not n².
	at := l.heredocIndex()[string(tag)]
	k, _ := slices.BinarySearch(at, l.pos+len(tag))
	if k == len(at) {
		return 0
	}
	return at[k] + len(tag)
}

// heredocIndex maps each heredoc tag that a '$' in src starts to where
// it stands, in order, read with this lexer's tag rule.
func (l *lexer) heredocIndex() map[string][]int {
	if l.heredocs != nil {
		return l.heredocs
	}
	l.heredocs = map[string][]int{}
	for i := 0; i < len(l.src); i++ {
		if l.src[i] != '$' {
			continue
		}
		j := i + 1
		if l.wordTags {
			for j < len(l.src) && isWordByte(l.src[j]) {
				j++
			}
		} else if k := bytes.IndexByte(l.src[j:], '$'); k >= 0 {
			j += k
		} else {
			break
		}
		if j < len(l.src) && l.src[j] == '$' {
			tag := string(l.src[i : j+1])
			l.heredocs[tag] = append(l.heredocs[tag], i)
		}
	}
	return l.heredocs
}

// unicodeQuoted reads the ‘string’ or “identifier” at l.pos up to the
// bytes E2 80 closer and returns its text: as ClickHouse, no escapes.
func (l *lexer) unicodeQuoted(closer byte) (string, bool) {
	start := l.pos + 3
	for i := start; ; i++ {
		j := bytes.IndexByte(l.src[i:], 0xE2)
		if j < 0 || i+j+2 >= len(l.src) {
			l.pos = len(l.src)
			return "", false
		}
		i += j
		if l.src[i+1] == 0x80 && l.src[i+2] == closer {
			l.pos = i + 3
			return string(l.src[start:i]), true
		}
	}
}

// Statement returns text without an INSERT's data: cut where the data
// begins (after VALUES or FORMAT <name>), else all of it. The audit
// records statements, never the rows they carry.
func Statement(text []byte) []byte {
	lx := lexer{src: text, dialect: dialects[features(text)]}
	if _, ok := lx.statement(); ok {
		return text[:lx.pos]
	}
	return text
}
