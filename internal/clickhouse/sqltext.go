package clickhouse

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
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
// log_comment), switch profile, or KILL on a shared account.
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
	return p
}

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
	for _, d := range dialects {
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
// the text is then data, never SQL.
func DataFollows(text []byte) bool {
	for _, d := range dialects {
		lx := lexer{src: text, dialect: d}
		if _, ok := lx.statement(); !ok {
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
	}
	return false
}

func (p TextPolicy) check(toks []token) error {
	if p.NoKill && len(toks) > 0 && toks[0].word && strings.EqualFold(toks[0].text, "KILL") {
		return refuse(http.StatusForbidden, CodeAccessDenied, "ACCESS_DENIED", "KILL is refused on a ClickHouse account that several people share: it would reach their queries too; "+
			"cancel your own query by closing its connection")
	}
	for i := 0; i+1 < len(toks); i++ {
		t := toks[i]
		if !t.word || !toks[i+1].eq || (i > 0 && toks[i-1].text == ".") {
			continue
		}
		for _, name := range p.Fixed {
			if strings.EqualFold(t.text, name) {
				return refuse(http.StatusBadRequest, codeReadonly, "READONLY", fmt.Sprintf("the setting %s is fixed for you by clickgate and may not be set in the query (SETTINGS or SET); "+
					"leave it out (a column of that name can be written as table.%s)", name, name))
			}
		}
	}
	return nil
}

// codeReadonly is ClickHouse's "Cannot modify setting in readonly mode".
const codeReadonly = 164

func refuse(status, code int, name, msg string) *Error {
	return &Error{Status: status, Code: code, Name: name, Msg: "clickgate: " + msg}
}

func containsFold(s []byte, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		if strings.EqualFold(string(s[i:i+n]), sub) {
			return true
		}
	}
	return false
}

// dialect is one way of reading SQL text; ClickHouse versions differ.
type dialect struct {
	nestedComments bool // /* /* */ */ is one comment
	hashComments   bool // "# " and "#!" start a line comment
	heredoc        bool // $tag$ … $tag$ is a string
}

var dialects = func() []dialect {
	var ds []dialect
	for i := range 8 {
		ds = append(ds, dialect{nestedComments: i&1 != 0, hashComments: i&2 != 0, heredoc: i&4 != 0})
	}
	return ds
}()

// token is a code token: a word (bare or quoted identifier, keyword,
// number), an "=" or "==" (eq), or another character.
type token struct {
	text string
	word bool
	eq   bool
}

type lexer struct {
	src []byte
	pos int
	dialect
}

// statement returns the code tokens of the text, stopping where an
// INSERT's data begins (after FORMAT <name> or VALUES), and whether it did.
func (l *lexer) statement() ([]token, bool) {
	var toks []token
	insert := false
	for {
		t, ok := l.next()
		if !ok {
			return toks, false
		}
		toks = append(toks, t)
		if len(toks) == 1 {
			insert = t.word && strings.EqualFold(t.text, "INSERT")
		}
		if !insert || !t.word {
			continue
		}
		if strings.EqualFold(t.text, "VALUES") {
			return toks, true
		}
		if n := len(toks); n >= 2 && toks[n-2].word && strings.EqualFold(toks[n-2].text, "FORMAT") {
			return toks, true
		}
	}
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
			return token{text: text, word: true}, true
		case c == '$' && l.heredoc && l.heredocTag() != "":
			if !l.skipHeredoc() {
				return token{}, false
			}
		case isWordByte(c):
			start := l.pos
			for l.pos < len(l.src) && (isWordByte(l.src[l.pos]) || l.src[l.pos] == '$') {
				l.pos++
			}
			return token{text: string(l.src[start:l.pos]), word: true}, true
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
			l.pos++
			l.unescape(&b)
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

// unescape decodes the escape sequence at l.pos (after the backslash) as
// ClickHouse does: \xHH, the C escapes, and any other character as itself.
func (l *lexer) unescape(b *strings.Builder) {
	c := l.src[l.pos]
	l.pos++
	switch c {
	case 'x', 'X':
		if l.pos+2 <= len(l.src) && isHex(l.src[l.pos]) && isHex(l.src[l.pos+1]) {
			b.WriteByte(unhex(l.src[l.pos])<<4 | unhex(l.src[l.pos+1]))
			l.pos += 2
			return
		}
		b.WriteByte(c)
	case 'n':
		b.WriteByte('\n')
	case 't':
		b.WriteByte('\t')
	case 'r':
		b.WriteByte('\r')
	case '0':
		b.WriteByte(0)
	case 'b':
		b.WriteByte('\b')
	case 'f':
		b.WriteByte('\f')
	case 'a':
		b.WriteByte('\a')
	case 'v':
		b.WriteByte('\v')
	default:
		b.WriteByte(c)
	}
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

// heredocTag returns the $tag$ opening at l.pos, or "".
func (l *lexer) heredocTag() string {
	i := l.pos + 1
	for i < len(l.src) && isWordByte(l.src[i]) {
		i++
	}
	if i < len(l.src) && l.src[i] == '$' {
		return string(l.src[l.pos : i+1])
	}
	return ""
}

func (l *lexer) skipHeredoc() bool {
	tag := l.heredocTag()
	end := bytes.Index(l.src[l.pos+len(tag):], []byte(tag))
	if end < 0 {
		l.pos = len(l.src)
		return false
	}
	l.pos += len(tag) + end + len(tag)
	return true
}
