package clickhouse

import (
	"strings"
	"unicode/utf8"
)

// Redact returns sql for an audit trail: each literal (string, heredoc,
// ‘string’, number) becomes "?", each comment and run of white space one
// space (a tab after '#', which a space would make a comment; none at
// either end); keywords, identifiers, operators and brackets stay. Like Check,
// it reads the text every way a ClickHouse version may (see dialect): a
// code token that some reading has inside a string, a comment or a
// number is "?" too, so that no literal of any reading is kept. An
// unclosed string, comment or quoted identifier is "?" to the end.
// Invalid UTF-8 (possible only inside a quoted identifier that it keeps)
// is replaced by U+FFFD.
func Redact(sql string) string {
	src := []byte(sql)
	mask := features(src)
	// hidden marks the bytes that another reading has in a literal or
	// a comment; the text is written out as the reading with every
	// feature that can matter for it reads it.
	var hidden []bool
	for i, d := range dialects {
		if i == mask || skipDialect(i, mask) {
			continue
		}
		if hidden == nil {
			hidden = make([]bool, len(src))
		}
		l := lexer{src: src, dialect: d}
		l.pieces(func(p piece) {
			if p.kind == pieceLiteral || p.kind == pieceComment {
				for j := p.start; j < p.end; j++ {
					hidden[j] = true
				}
			}
		})
	}
	var b strings.Builder
	b.Grow(len(src))
	space := false // a space is due before the next output
	l := lexer{src: src, dialect: dialects[mask]}
	l.pieces(func(p piece) {
		if p.kind == pieceSpace || p.kind == pieceComment {
			space = b.Len() > 0
			return
		}
		if space {
			// A space after '#' would make it a comment.
			if strings.HasSuffix(b.String(), "#") {
				b.WriteByte('\t')
			} else {
				b.WriteByte(' ')
			}
			space = false
		}
		if p.kind == pieceLiteral || anyTrue(hidden, p.start, p.end) {
			b.WriteByte('?')
			return
		}
		b.Write(src[p.start:p.end])
	})
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

func anyTrue(marks []bool, from, to int) bool {
	if marks == nil {
		return false
	}
	for _, m := range marks[from:to] {
		if m {
			return true
		}
	}
	return false
}

// A piece of the text, as a lexer reads it.
type piece struct {
	kind       int
	start, end int
	tok        token // of a pieceCode
}

const (
	pieceCode    = iota // one code token: a word, a quoted identifier, "=", another character
	pieceSpace          // white space, or other non-ASCII outside literals
	pieceComment        // a comment, closed or not
	pieceLiteral        // a string, heredoc, ‘string’ or number; or anything unclosed
)

// pieces reads the whole text as next does, piece by piece: what next
// skips (white space, comments, strings), next's tokens, and numbers,
// which next returns as several tokens (1.5e-3 is "1", ".", "5e", "-",
// "3") and pieces as one literal. The skipped pieces are recognised as
// in next and read with its own functions; a token that does not start
// where the skipped ones end, which would mean the two disagree, is a
// literal, so that the text is never shown for it.
func (l *lexer) pieces(yield func(piece)) {
	afterOperand := false // the last code piece ends an operand: a '.' then is no decimal point
	for l.pos < len(l.src) {
		start := l.pos
		if kind := l.skipPiece(); kind != pieceCode {
			yield(piece{kind: kind, start: start, end: l.pos})
			continue
		}
		t, ok := l.next()
		if !ok {
			// An unclosed quoted identifier (else skipPiece has read
			// what next skips): ClickHouse refuses it.
			yield(piece{kind: pieceLiteral, start: start, end: len(l.src)})
			return
		}
		p := piece{kind: pieceCode, start: start, end: l.pos, tok: t}
		if !l.startsAt(t, start) {
			p.kind = pieceLiteral
		}
		if t.word && !t.quoted && isDigit(t.text[0]) || !t.word && t.text == "." && !afterOperand && isDigit(l.peek(0)) {
			// A number: "1", "0x1F", "1e", "1_000", or ".5".
			p.kind = pieceLiteral
			l.numberRest(t)
			p.end = l.pos
		}
		afterOperand = p.kind == pieceLiteral || t.word || closes(t)
		yield(p)
	}
}

// skipPiece reads at l.pos a piece that next would skip over, and
// returns its kind, or pieceCode where next would return a token. Its
// cases are those of next.
func (l *lexer) skipPiece() int {
	c := l.src[l.pos]
	switch {
	case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
		l.pos++
		return pieceSpace
	case c == 0xE2 && l.unicodeQuotes && l.pos+5 < len(l.src) && l.src[l.pos+1] == 0x80 && (l.src[l.pos+2] == 0x98 || l.src[l.pos+2] == 0x9C):
		if l.src[l.pos+2] == 0x9C {
			return pieceCode // “identifier”
		}
		l.unicodeQuoted(0x99) // to the end when unclosed
		return pieceLiteral
	case c >= utf8.RuneSelf:
		_, n := utf8.DecodeRune(l.src[l.pos:])
		l.pos += n
		return pieceSpace
	case c == '-' && l.peek(1) == '-',
		c == '#' && l.hashComments && (l.peek(1) == ' ' || l.peek(1) == '!'),
		c == '/' && l.slashComments && l.peek(1) == '/':
		l.skipLine()
		return pieceComment
	case c == '/' && l.peek(1) == '*':
		l.skipBlockComment() // to the end when unclosed
		return pieceComment
	case c == '\'':
		l.quoted('\'') // to the end when unclosed
		return pieceLiteral
	case c == '$' && l.heredoc:
		if end := l.heredocEnd(); end > 0 {
			l.pos = end
			return pieceLiteral
		}
	}
	return pieceCode
}

// startsAt reports whether t, just read by next, starts at start: that
// next skipped nothing that skipPiece did not.
func (l *lexer) startsAt(t token, start int) bool {
	switch {
	case t.quoted:
		c := l.src[start]
		return c == '"' || c == '`' || c == 0xE2
	case t.eq:
		return l.src[start] == '=' && (l.pos-start == 1 || l.pos-start == 2)
	default:
		return l.pos-start == len(t.text)
	}
}

// numberRest reads the rest of the number whose first token next has
// just read (a word that starts with a digit, or the '.' of ".5"): a
// fraction ".5", and an exponent sign with its digits ("1e-3", "0x1p+4").
// It reads them with next, as next would.
func (l *lexer) numberRest(t token) {
	last := t.text
	if t.text == "." {
		last = l.word().text
	} else if l.peek(0) == '.' && l.peek(1) != '.' {
		l.pos++
		if isWordByte(l.peek(0)) {
			last = l.word().text
		}
	}
	if e := last[len(last)-1] | 0x20; (e == 'e' || e == 'p') && (l.peek(0) == '+' || l.peek(0) == '-') && isDigit(l.peek(1)) {
		l.pos++
		l.word()
	}
}

// StatementKind returns the kind of the statement sql, from its first
// keyword, in upper case: SELECT (also for WITH … SELECT and a SELECT in
// brackets), INSERT, CREATE, ALTER, DROP, EXPLAIN, SHOW, … A statement
// run as another user (EXECUTE AS name …) is of the kind of what
// follows. It is "" when the first word is not a statement keyword that
// ClickHouse knows (or there is none), so that the kinds are few.
func StatementKind(sql string) string {
	src := []byte(sql)
	l := lexer{src: src, dialect: dialects[features(src)]}
	t, ok := l.next()
	for ok && !t.word && t.text == "(" {
		t, ok = l.next()
	}
	if !ok || !t.word || t.quoted {
		return ""
	}
	kind := strings.ToUpper(t.text)
	if kind == "EXECUTE" {
		// EXECUTE AS name [statement]: name is a word or a quoted one.
		as, _ := l.next()
		name, _ := l.next()
		if as.keyword("AS") && name.word {
			if next := StatementKind(string(src[l.pos:])); next != "" {
				return next
			}
		}
	}
	return statementKinds[kind]
}

// statementKinds maps the first keyword of a statement to its kind.
var statementKinds = func() map[string]string {
	m := map[string]string{"WITH": "SELECT", "DESC": "DESCRIBE", "REPLACE": "CREATE"}
	for _, k := range strings.Fields(`SELECT INSERT CREATE ALTER DROP EXPLAIN SHOW DESCRIBE USE SET SYSTEM
		OPTIMIZE KILL GRANT REVOKE RENAME TRUNCATE EXISTS CHECK DETACH ATTACH WATCH BACKUP RESTORE UNDROP
		MOVE EXCHANGE DELETE UPDATE BEGIN COMMIT ROLLBACK EXECUTE`) {
		m[k] = k
	}
	return m
}()
