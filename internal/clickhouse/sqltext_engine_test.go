package clickhouse

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/chdbtest"
	"github.com/clickgate/clickgate/internal/chsql"
	"github.com/clickgate/clickgate/internal/chtest"
)

// The differential tests below ask real ClickHouse how it reads hostile
// query texts, and check that TextPolicy.Check refuses every text that
// ClickHouse reads as assigning a fixed setting or as KILL.

// Pieces of hostile texts. Each hides something from some reader of SQL:
// a quote, a comment opener or a closer that one lexer takes as code and
// another as part of a string, identifier or comment.
var (
	// hideExprs stand where an expression may (a SELECT list).
	hideExprs = []string{
		"1", "$$ ' $$", "$a$ ' $a$", "$ a$ ' $ a$", "$'$ x $'$", "$$ ' $$ AS $b$", "‘ ' ’", "1 AS “ -- ”", "1 AS “/*”",
		"1 AS “'”", "1 /* /* */ ' */", "1 /* ' */", "1 # '\n", "1 #!'\n", "1 // '\n", "1 -- '\n", "x'41'", "'it''s'", `'\''`,
		"1 AS `'`", `1 AS "'"`, "1e-1", "(1)", "[1]", "1$$ ' $$", "4 //* ' */ 2", "' $$ '", "' ‘ '", "1 AS $x", "0b2e--1\n",
		"1e--1\n", "‘a’ AS “b”", "$$$$", "'\\\\'", "1 AS `\\``",
	}
	// statementPrefixes go before a whole statement.
	statementPrefixes = []string{"", "/* /* */ ' */ ", "# '\n", "// '\n", "-- '\n", "/* ' */ ", "#! x\n", "\u3000", "‘ ’ "}
	// hostileTails end a text.
	hostileTails = []string{"", " -- '", " /* ' */", " FORMAT TSV", "\n", " -- $$", " -- ’", " # '", " // '", " -- ”", ";"}
	// settingNames spell a setting; only some of them name a fixed one.
	settingNames = []string{
		"readonly", "max_result_rows", "`readonly`", `"readonly"`, "`read\\x6Fnly`", `"read\x6fnly"`, "“readonly”", "READONLY",
		"`rea\\donly`", "allow_ddl", "x.readonly", "`max_result_rows`", "“max_result_rows”", "`allow_ddl`", "max_threads",
	}
	settingOps    = []string{"=", "==", "", " = = "}
	settingValues = []string{"0", "1", "DEFAULT", "'0'", "7", "true"}
	// fragments are inserted at random places into other texts.
	fragments = []string{
		"'", `"`, "`", "$$", "$a$", "$ a$", "/*", "*/", "--", "# ", "#!", "//", "‘", "’", "“", "”", "\\", "\n", "x'", "1e-",
		"(", ")", ",", " SETTINGS ", " SET ", "readonly", "=", "allow_ddl", " ", "/* /* */", "\u00a0", "$", ";", " KILL ",
		" FORMAT TSV\n", " VALUES ", " SELECT ",
	}
)

// hostileCorpus returns the texts of the unit tests and n generated
// texts: assignments built from the pieces above with separators between
// the tokens, and random insertions of fragments into other texts.
func hostileCorpus(n int) []string {
	r := rand.New(rand.NewPCG(26, 7))
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	var texts []string
	for _, cs := range [][]textCase{settingCases, killCases} {
		for _, c := range cs {
			texts = append(texts, c.text)
		}
	}
	assignment := func() string {
		name, op := pick(settingNames), pick(settingOps)
		s := pick(separators) + name + pick(separators) + op
		if op != "" {
			s += pick(separators) + pick(settingValues)
		}
		return s
	}
	generate := func() string {
		switch r.IntN(6) {
		case 0:
			return pick(statementPrefixes) + "SELECT " + pick(hideExprs) + pick(separators) + "SETTINGS" + assignment() + pick(hostileTails)
		case 1:
			return pick(statementPrefixes) + "SET" + assignment() + pick(hostileTails)
		case 2:
			return "SELECT " + pick(hideExprs) + " SETTINGS max_threads = 1" + pick(separators) + "," + assignment() + pick(hostileTails)
		case 3:
			return pick(statementPrefixes) + "INSERT INTO t SELECT " + pick(hideExprs) + pick(separators) + "SETTINGS" + assignment() + pick(hostileTails)
		case 4:
			return pick(statementPrefixes) + "INSERT INTO t" + pick(separators) + "SETTINGS" + assignment() + " FORMAT TSV\n1\n"
		default:
			return pick(statementPrefixes) + pick([]string{"KILL", "kill", "EXECUTE AS bob KILL"}) + pick(separators) + "QUERY WHERE 1" + pick(hostileTails)
		}
	}
	for i := 0; i < n; i++ {
		var t string
		if i%3 == 2 {
			// Mutate a text: a unit-test case or a generated one.
			if r.IntN(2) == 0 {
				t = texts[r.IntN(len(settingCases)+len(killCases))]
			} else {
				t = generate()
			}
			for range 1 + r.IntN(3) {
				at := r.IntN(len(t) + 1)
				t = t[:at] + pick(fragments) + t[at:]
			}
		} else {
			t = generate()
		}
		texts = append(texts, t)
	}
	return texts
}

// canonical is ClickHouse's own formatting of text, as the server parses
// it (implicit_select is on in clickhouse-local and chDB only); an error
// means ClickHouse does not parse the text.
func canonical(e *chdbtest.Engine, text string) (string, error) {
	return e.Exec("SELECT formatQuerySingleLine("+chsql.Literal(text)+") SETTINGS implicit_select = 0", "RawBLOB")
}

// canonToken is a token of ClickHouse's formatted SQL.
type canonToken struct {
	text  string
	ident bool // bare word or back-quoted identifier (decoded)
	str   bool // string literal
}

// canonTokens splits formatted SQL: it has no comments, strings are in
// single quotes and identifiers in back quotes, both with backslash
// escapes.
func canonTokens(s string) []canonToken {
	var toks []canonToken
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\n' || c == '\t':
			i++
		case c == '\'' || c == '`':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			toks = append(toks, canonToken{text: b.String(), ident: c == '`', str: c == '\''})
			i = j + 1
		case isWordByte(c) || c == '$' || c >= 0x80:
			j := i
			for j < len(s) && (isWordByte(s[j]) || s[j] == '$' || s[j] >= 0x80) {
				j++
			}
			toks = append(toks, canonToken{text: s[i:j], ident: true})
			i = j
		default:
			toks = append(toks, canonToken{text: s[i : i+1]})
			i++
		}
	}
	return toks
}

// assignedSettings returns the settings that formatted SQL assigns in SET
// statements and SETTINGS clauses (name = value, …), names in full
// (compound names joined by '.').
func assignedSettings(canon string) []string {
	toks := canonTokens(canon)
	var names []string
	for i := 0; i < len(toks); i++ {
		if t := toks[i]; t.str || t.text != "SET" && t.text != "SETTINGS" {
			continue
		}
		j := i + 1
		for {
			// name [. name]* = value
			if j >= len(toks) || !toks[j].ident {
				break
			}
			name := toks[j].text
			j++
			for j+1 < len(toks) && toks[j].text == "." && !toks[j].str && toks[j+1].ident {
				name += "." + toks[j+1].text
				j += 2
			}
			if j >= len(toks) || toks[j].text != "=" || toks[j].str {
				break
			}
			names = append(names, name)
			// The value: up to a comma outside brackets, or the first token
			// that cannot continue it.
			j++
			depth := 0
			for ; j < len(toks); j++ {
				t := toks[j]
				if !t.str && (t.text == "(" || t.text == "[" || t.text == "{") {
					depth++
				} else if !t.str && (t.text == ")" || t.text == "]" || t.text == "}") {
					depth--
					if depth < 0 {
						break
					}
				} else if depth == 0 && !t.str && t.text == "," {
					break
				} else if depth == 0 && t.ident && (toks[j-1].ident || toks[j-1].str) {
					break // FORMAT, UNION, … after the value
				}
			}
			if j >= len(toks) || toks[j].text != "," || toks[j].str {
				break
			}
			j++
		}
	}
	return names
}

// canonKill reports formatted SQL that is a KILL statement.
func canonKill(canon string) bool {
	toks := canonTokens(canon)
	if len(toks) > 0 && toks[0].text == "KILL" {
		return true
	}
	if len(toks) > 2 && toks[0].text == "EXECUTE" && toks[1].text == "AS" {
		for _, t := range toks[2:min(len(toks), 7)] {
			if t.text == "KILL" && !t.str {
				return true
			}
		}
	}
	return false
}

func TestAssignedSettings(t *testing.T) {
	for canon, want := range map[string][]string{
		"SELECT 1 SETTINGS readonly = 0":                                                          {"readonly"},
		"SET readonly = 1, param_x = 'a, b = 1'":                                                  {"readonly", "param_x"},
		"SELECT 1 SETTINGS allow_ddl = true, max_threads = DEFAULT FORMAT TSV":                    {"allow_ddl", "max_threads"},
		"SELECT a, readonly = 1 FROM t WHERE readonly = 1":                                        nil,
		"SELECT 'SETTINGS readonly = 0'":                                                          nil,
		"SELECT 1 AS `SETTINGS readonly = 0`":                                                     nil,
		"SELECT 1 SETTINGS `read\\`only` = 0, x.readonly = -1, d = disk(type = 'local'), m = 1.5": {"read`only", "x.readonly", "d", "m"},
		"SELECT (SELECT 1 SETTINGS readonly = 0) SETTINGS max_result_rows = {n:UInt64}":           {"readonly", "max_result_rows"},
		"SELECT 1 SETTINGS f = {'a':'b'}, readonly = 0 UNION ALL SELECT 2, readonly = 1":          {"f", "readonly"},
	} {
		got := assignedSettings(canon)
		if !slices.Equal(got, want) {
			t.Errorf("assignedSettings(%q) = %q, want %q", canon, got, want)
		}
	}
}

// fixedForDifferential are the settings the differential tests fix.
var fixedForDifferential = []string{"readonly", "max_result_rows", "allow_ddl"}

// Whenever ClickHouse 26.7 reads a text as assigning a fixed setting (or
// as KILL), Check refuses it.
func TestTextPolicyAgainstCurrentClickHouse(t *testing.T) {
	e := chdbtest.Open(t)
	n := 12000
	if testing.Short() {
		n = 1500
	}
	texts := hostileCorpus(n)
	policy := TextPolicy{Fixed: fixedForDifferential}
	kill := TextPolicy{NoKill: true}
	var parsed, assigning, refusedAssigning, falsePositive, kills, refusedKills int
	falsePositives := map[string]string{}
	for _, text := range texts {
		if strings.IndexByte(text, 0) >= 0 {
			continue
		}
		canon, err := canonical(e, text)
		var ce *chdbtest.Error
		if errors.As(err, &ce) {
			continue // ClickHouse does not parse it
		}
		if err != nil {
			t.Fatalf("formatQuery(%q): %v", text, err)
		}
		parsed++
		assigns := false
		for _, name := range assignedSettings(canon) {
			assigns = assigns || slices.Contains(fixedForDifferential, name)
		}
		refused := policy.Check([]byte(text)) != nil
		switch {
		case assigns && refused:
			assigning++
			refusedAssigning++
		case assigns:
			assigning++
			t.Errorf("ClickHouse %s reads %q as %q, assigning a fixed setting, but Check passes it", e.Version(), text, canon)
		case refused:
			falsePositive++
			falsePositives[text] = canon
		}
		if canonKill(canon) {
			kills++
			if kill.Check([]byte(text)) == nil {
				t.Errorf("ClickHouse %s reads %q as %q, a KILL, but Check passes it", e.Version(), text, canon)
			} else {
				refusedKills++
			}
		}
	}
	t.Logf("ClickHouse %s: %d texts, %d parsed, %d assign a fixed setting (all %d refused: %v), %d refused though ClickHouse sees no assignment; %d KILL (%d refused)",
		e.Version(), len(texts), parsed, assigning, refusedAssigning, assigning == refusedAssigning, falsePositive, kills, refusedKills)
	shown := 0
	for _, text := range sortedKeys(falsePositives) {
		if shown++; shown > 8 {
			break
		}
		t.Logf("false positive: %q (ClickHouse: %q)", text, falsePositives[text])
	}
	if assigning < 500 || kills < 50 {
		t.Errorf("the corpus reaches too few assignments (%d) or KILLs (%d) to mean much", assigning, kills)
	}
}

// The gateway stops reading a body once DataFollows says the INSERT's
// data has begun, and checks only what it read. So for every prefix P
// where DataFollows(P) holds and Check(P) passes, whatever follows P
// must not make ClickHouse 26.7 read an assignment of a fixed setting.
func TestDataFollowsAgainstCurrentClickHouse(t *testing.T) {
	e := chdbtest.Open(t)
	values := []string{"1", "'x'", "$a$", "$$", "$a$1$a$", "$ab", "$", "$a b$", "‘x’", "x'41'", "$a$'$a$", "{'a':'b'}", "-1"}
	heads := []string{
		"INSERT INTO t SETTINGS max_threads = %s FORMAT TSV\n", "INSERT INTO t SETTINGS max_threads = %s VALUES ",
		"INSERT INTO t SETTINGS max_threads = %s FORMAT TSV", "INSERT INTO t (a) SETTINGS max_threads = %s FORMAT TSV ",
		"INSERT INTO t SETTINGS max_threads = 1, max_block_size = %s FORMAT TSV\n", "INSERT INTO t SELECT %s FORMAT TSV\n",
		"INSERT INTO t /* %s */ FORMAT TSV\n", "INSERT INTO t -- %s\nFORMAT TSV\n",
	}
	follows := []string{
		"1\n", "$a$, readonly = 0 FORMAT TSV\n1\n", "$$, readonly = 0 FORMAT TSV\n1\n", "b$, readonly = 0 FORMAT TSV\n1\n",
		"$ x $ab FORMAT TSV\n$, readonly = 0 FORMAT TSV\n", "SETTINGS readonly = 0\n1\n", "\nSETTINGS readonly = 0 FORMAT TSV\n1\n",
		"’, readonly = 0 FORMAT TSV\n1\n", "' , readonly = 0 FORMAT TSV\n1\n", " */ , readonly = 0 FORMAT TSV\n", "$, readonly = 0 FORMAT TSV\n",
		"x$, readonly = 0 FORMAT TSV\n1\n", "$a b$, readonly = 0 FORMAT TSV\n1\n", ", allow_ddl FORMAT TSV\n1\n",
	}
	r := rand.New(rand.NewPCG(26, 8))
	var prefixes []string
	for _, h := range heads {
		for _, v := range values {
			prefixes = append(prefixes, fmt.Sprintf(h, v))
		}
	}
	for range 400 {
		p := prefixes[r.IntN(len(prefixes))]
		at := r.IntN(len(p) + 1)
		prefixes = append(prefixes, p[:at]+fragments[r.IntN(len(fragments))]+p[at:])
	}
	policy := TextPolicy{Fixed: fixedForDifferential}
	var streamed, parsed, assigning int
	var withData []string // a prefix is cut where the data's first token is whole, as the gateway reads
	for _, p := range prefixes {
		withData = append(withData, p, p+"1\t")
	}
	for _, p := range withData {
		if !DataFollows([]byte(p), false) || policy.Check([]byte(p)) != nil {
			continue
		}
		for _, f := range follows {
			streamed++
			canon, err := canonical(e, p+f)
			if err != nil {
				continue
			}
			parsed++
			for _, name := range assignedSettings(canon) {
				if slices.Contains(fixedForDifferential, name) {
					assigning++
					t.Errorf("DataFollows(%q) and Check passes it, but ClickHouse %s reads it followed by %q as %q", p, e.Version(), f, canon)
					break
				}
			}
		}
	}
	t.Logf("ClickHouse %s: %d prefixes, %d (prefix, what follows) pairs where DataFollows holds and Check passes, %d parsed, %d assign a fixed setting",
		e.Version(), len(prefixes), streamed, parsed, assigning)
	if streamed < 500 || parsed < 200 {
		t.Errorf("too few pairs (%d streamed, %d parsed) to mean much", streamed, parsed)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Against the real ClickHouse 18.16 server: a query that reads its own
// max_result_rows (5 from the URL), with hostile ways to set it to 7.
// Whenever the server changed it, Check refuses the text.
func TestTextPolicyAgainstClickHouse1816(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	const query = "SELECT value FROM system.settings WHERE name = 'max_result_rows'"
	baseline := url.Values{"max_result_rows": {"5"}}
	answers := func(text string) string {
		out, err := ch.QueryParams(chtest.AdminUser, chtest.AdminPassword, text, baseline)
		if err != nil {
			return ""
		}
		first, _, _ := strings.Cut(out, "\t")
		return first
	}
	// The pieces that 18.16 reads at all (it has no heredocs, '#'
	// comments, nested comments or Unicode quotes), so that most texts
	// are queries it runs.
	keep := func(pieces []string, text func(string) string) []string {
		var kept []string
		for _, p := range pieces {
			if answers(text(p)) == "5" {
				kept = append(kept, p)
			}
		}
		return kept
	}
	exprs := keep(hideExprs, func(e string) string {
		return "SELECT value, " + e + " FROM system.settings WHERE name = 'max_result_rows'"
	})
	seps := keep(separators, func(s string) string { return query + s + "SETTINGS max_threads = 1" })
	tails := keep(hostileTails, func(s string) string { return query + s })
	prefixes := keep(statementPrefixes, func(p string) string { return p + query })
	names := keep([]string{"max_result_rows", "`max_result_rows`", `"max_result_rows"`, "`max_result\\x5Frows`", `"max\_result\_rows"`, "`max\\_result_rows`", "MAX_RESULT_ROWS", "max_result_rows_"},
		func(n string) string { return query + " SETTINGS " + n + " = 5" })
	r := rand.New(rand.NewPCG(18, 16))
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	generate := func(expr string) string {
		return pick(prefixes) + "SELECT value, " + expr + " FROM system.settings WHERE name = 'max_result_rows'" + pick(seps) +
			"SETTINGS" + pick(seps) + pick([]string{"", "max_threads = 1" + pick(seps) + "," + pick(seps)}) +
			pick(names) + pick(seps) + pick([]string{"=", "=="}) + pick(seps) + "7" + pick(tails)
	}
	texts := []string{
		query + " // '\n SETTINGS max_result_rows = 7 -- '",
		query + " /* /* */ SETTINGS max_result_rows = 7 /* ' */",
		query + " SETTINGS max_threads = 1, `max_result\\x5Frows` == 7",
		query + " SETTINGS \"max\\_result\\_rows\"\u00a0=\u30007",
		query + " SETTINGS max_result_rows -- '\n = 7 -- '",
		"SELECT value, '\\'' FROM system.settings WHERE name = 'max_result_rows' SETTINGS max_result_rows = 7 -- '",
	}
	for _, text := range texts {
		t.Logf("ClickHouse %s answers %q to %q", ch.Version, answers(text), text)
	}
	for _, expr := range exprs {
		for range 40 {
			texts = append(texts, generate(expr))
		}
	}
	for range 1500 {
		s := generate(pick(exprs))
		from := strings.Index(s, "'max_result_rows'") + len("'max_result_rows'")
		at := from + r.IntN(len(s)-from+1)
		texts = append(texts, s[:at]+pick(fragments)+s[at:])
	}
	policy := TextPolicy{Fixed: []string{"max_result_rows"}}
	var applied, refusedApplied, answered, falsePositive int
	for _, text := range texts {
		first := answers(text)
		if first == "" {
			continue // not parsed, or not the query meant
		}
		answered++
		refused := policy.Check([]byte(text)) != nil
		switch {
		case first != "5": // 7, or what a fragment made of it (1e-7 is 0)
			applied++
			if refused {
				refusedApplied++
			} else {
				t.Errorf("ClickHouse %s set max_result_rows to %s from %q, but Check passes it", ch.Version, first, text)
			}
		case refused:
			falsePositive++
		}
	}
	// SET, in a session.
	var setApplied, setRefused int
	for i, text := range []string{
		"SET max_result_rows = 7", "SET max_result_rows/* /* */ ' */=7 -- '", "/* /* */ ' */ SET max_result_rows = 7 -- '",
		"SET `max_result\\x5Frows` = 7", "SET\u00a0max_result_rows\u3000=\u20037", "SET max_result_rows -- x\n= 7", "# '\nSET max_result_rows = 7 -- '",
		"SET \"max_result_rows\" == 7", "$$ ' $$ SET max_result_rows = 7 -- '", "// '\nSET max_result_rows = 7 -- '", "SET max_result_rows // x\n= 7",
	} {
		session := url.Values{"session_id": {fmt.Sprintf("sqltext-%d", i)}}
		if _, err := ch.QueryParams(chtest.AdminUser, chtest.AdminPassword, text, session); err != nil {
			continue
		}
		out, err := ch.QueryParams(chtest.AdminUser, chtest.AdminPassword, query, session)
		if err != nil || out != "7" {
			continue
		}
		setApplied++
		if policy.Check([]byte(text)) == nil {
			t.Errorf("ClickHouse %s applied max_result_rows = 7 from %q in a session, but Check passes it", ch.Version, text)
		} else {
			setRefused++
		}
	}
	t.Logf("ClickHouse %s reads %d of %d expressions, %d of %d separators, %d of %d statement prefixes, %d of %d tails, names %q",
		ch.Version, len(exprs), len(hideExprs), len(seps), len(separators), len(prefixes), len(statementPrefixes), len(tails), len(hostileTails), names)
	t.Logf("ClickHouse %s: %d texts, %d answered, %d set max_result_rows (%d refused), %d refused though not applied; SET in a session: %d applied (%d refused)",
		ch.Version, len(texts), answered, applied, refusedApplied, falsePositive, setApplied, setRefused)
	if applied < 50 || setApplied < 3 {
		t.Errorf("too few texts (%d, SET %d) set the setting to mean much", applied, setApplied)
	}
}
