package identity

import (
	"strings"
	"testing"
)

// maxFuzzOutput bounds what one Apply may produce in FuzzParseTransform.
// A transform can multiply its input ("s/x/xx/g" repeated), so the fuzzer
// keeps inputs small and refuses replacement-heavy expressions before
// applying them; see transformGrowthBound.
const maxFuzzOutput = 1 << 20

// transformGrowthBound is an upper bound on len(t.Apply(s)) for an input of
// n bytes: a global substitution replaces at most n+1 matches (empty ones
// included), each by at most the expanded replacement, which is at most
// repl bytes plus, per group reference, the current length.
func transformGrowthBound(t Transform, n int) int {
	size := n
	for _, s := range t {
		refs := strings.Count(s.repl, "${")
		per := len(s.repl) + refs*size
		matches := 1
		if s.global {
			matches = size + 1
		}
		size += matches * per
		if size > maxFuzzOutput || size < 0 {
			return maxFuzzOutput + 1
		}
	}
	return size
}

// FuzzParseTransform: ParseTransform never panics; a transform that parses
// applies to any input without panicking, deterministically, and an empty
// transform is the identity.
func FuzzParseTransform(f *testing.F) {
	seeds := []struct{ expr, input string }{
		{"s/^ch-//; s/-/_/g", "ch-data-eng"},
		{"s/^ch-//", "ch-analysts"},
		{"s|/|_|g", "/team/sub"},
		{`s/^(\w+)-(\w+)$/\2_\1/`, "data-eng"},
		{"s/x/[&]/g", "axbxc"},
		{`s/x/\&/`, "x"},
		{`s/a/\$1/`, "a"},
		{"s/A/b/gi", "aAa"},
		{"s/(?i)ADMIN/root/", "Admin"},
		{"s/.*//", "anything"},
		{"s/^/prefix_/", ""},
		{"s/$/_suffix/", "x"},
		{"s//-/g", "abc"},
		{`s/\//x/`, "a/b"},
		{`s#a\#b#c#`, "a#b"},
		{"s/é/e/g", "café"},
		{"s/[/x/", "["},
		{"s/a/b/q", "a"},
		{"s/a/b", "a"},
		{"s/a", "a"},
		{"x/a/b/", "a"},
		{`s\a\b\`, "a"},
		{"s a b ", "a"},
		{"s;a;b;", "a"},
		{";;; \n", "keep"},
		{"", "unchanged"},
		{"s/a/b/;s/b/c/;s/c/d/", "a"},
		{"s/(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)/\\9\\1\\0/", "abcdefghij"},
		{"s/x/\\n/", "x"},
		{strings.Repeat("s/a/aa/g;", 4), "aaaa"},
		{"s/" + strings.Repeat("(", 300) + "a" + strings.Repeat(")", 300) + "/b/", "a"},
	}
	for _, s := range seeds {
		f.Add(s.expr, s.input)
	}
	f.Fuzz(func(t *testing.T, expr, input string) {
		if len(input) > 4096 {
			return
		}
		tr, err := ParseTransform(expr)
		if err != nil {
			if tr != nil {
				t.Fatalf("ParseTransform returned %d substitutions and an error", len(tr))
			}
			if len(expr) > 64 && strings.Contains(err.Error(), expr) {
				t.Fatalf("error message holds the whole %d-byte expression: %v", len(expr), err)
			}
			return
		}
		if len(expr) > MaxTransformBytes {
			t.Fatalf("accepted a %d-byte expression; the limit is %d", len(expr), MaxTransformBytes)
		}
		if strings.Trim(expr, " \t\n;") == "" && len(tr) != 0 {
			t.Fatalf("blank expression %q parsed to %d substitutions", expr, len(tr))
		}
		if len(tr) == 0 && tr.Apply(input) != input {
			t.Fatalf("empty transform changed %q", input)
		}
		if transformGrowthBound(tr, len(input)) > maxFuzzOutput {
			return // would only measure the machine's memory
		}
		out := tr.Apply(input)
		if again := tr.Apply(input); again != out {
			t.Fatalf("Apply is not deterministic: %q then %q", out, again)
		}
		if len(out) > maxFuzzOutput {
			t.Fatalf("output of %d bytes exceeds the computed bound", len(out))
		}
		var empty Transform
		if got := empty.Apply(input); got != input {
			t.Fatalf("empty Transform changed %q into %q", input, got)
		}
	})
}
