package identity

import (
	"fmt"
	"regexp"
	"strings"
)

// Transform is a list of sed-style substitutions, applied in order.
type Transform []substitution

type substitution struct {
	re     *regexp.Regexp
	repl   string // in regexp.Expand syntax
	global bool
}

// MaxTransformBytes bounds a transform expression.
const MaxTransformBytes = 4096

// ParseTransform parses "s/re/repl/flags; s|re|repl|flags; …". Any
// character may delimit, as in sed; a backslash escapes the delimiter.
// Flags: g (every match, not only the first) and i (ignore case). In the
// replacement, \1…\9 and & refer to groups and the whole match; \& is a
// literal &.
func ParseTransform(expr string) (Transform, error) {
	if len(expr) > MaxTransformBytes {
		return nil, fmt.Errorf("longer than %d bytes", MaxTransformBytes)
	}
	var t Transform
	rest := expr
	for {
		rest = strings.TrimLeft(rest, " \t\n;")
		if rest == "" {
			return t, nil
		}
		if rest[0] != 's' || len(rest) < 2 {
			return nil, fmt.Errorf("expected s/regexp/replacement/flags at %q", clip(rest))
		}
		delim := rest[1]
		if delim == '\\' || delim == '\n' || delim == ' ' || delim == ';' {
			return nil, fmt.Errorf("%q cannot delimit a substitution", delim)
		}
		rest = rest[2:]
		pattern, r, ok := cutUnescaped(rest, delim, regexp.QuoteMeta(string(delim)))
		if !ok {
			return nil, fmt.Errorf("substitution %q has no end of pattern", clip(expr))
		}
		replacement, r, ok := cutUnescaped(r, delim, "\\"+string(delim))
		if !ok {
			return nil, fmt.Errorf("substitution %q has no end of replacement", clip(expr))
		}
		flags, r, _ := strings.Cut(r, ";")
		rest = r
		s := substitution{}
		prefix := ""
		for _, f := range strings.TrimSpace(flags) {
			switch f {
			case 'g':
				s.global = true
			case 'i':
				prefix = "(?i)"
			default:
				return nil, fmt.Errorf("unknown flag %q in %q (use g and i)", f, clip(expr))
			}
		}
		re, err := regexp.Compile(prefix + pattern)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %v", clip(pattern), err)
		}
		s.re = re
		s.repl = sedToExpand(replacement)
		t = append(t, s)
	}
}

// cutUnescaped splits s at the first delim not preceded by a backslash.
// An escaped delimiter stands for the character itself: escapedDelim says
// how to write it (in a pattern, a delimiter such as | or . must stay
// literal, not become regexp syntax).
func cutUnescaped(s string, delim byte, escapedDelim string) (before, after string, found bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == delim:
			b.WriteString(escapedDelim)
			i++
		case s[i] == '\\' && i+1 < len(s):
			b.WriteByte(s[i])
			b.WriteByte(s[i+1])
			i++
		case s[i] == delim:
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", false
}

// sedToExpand converts a sed replacement to regexp.Expand's template.
func sedToExpand(r string) string {
	var b strings.Builder
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case c == '\\' && i+1 < len(r):
			n := r[i+1]
			i++
			switch {
			case n >= '0' && n <= '9':
				b.WriteString("${" + string(n) + "}")
			case n == 'n':
				b.WriteByte('\n')
			case n == '$':
				b.WriteString("$$")
			default:
				b.WriteByte(n)
			}
		case c == '&':
			b.WriteString("${0}")
		case c == '$':
			b.WriteString("$$")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Apply runs every substitution on s.
func (t Transform) Apply(s string) string {
	for _, sub := range t {
		if sub.global {
			s = sub.re.ReplaceAllString(s, sub.repl)
			continue
		}
		m := sub.re.FindStringSubmatchIndex(s)
		if m == nil {
			continue
		}
		var out []byte
		out = append(out, s[:m[0]]...)
		out = sub.re.ExpandString(out, sub.repl, s, m)
		s = string(append(out, s[m[1]:]...))
	}
	return s
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
