package chdbtest

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/clickgate/clickgate/internal/chdb/npmlib"
	"github.com/clickgate/clickgate/internal/chdbtest/internal/preload"
	"github.com/clickgate/clickgate/internal/chsql"
)

func TestEngineVersionHasExecuteAs(t *testing.T) {
	e := Open(t)
	t.Logf("ClickHouse %s from %s, engine started in %v", e.Version(), LibPath(), e.LoadTime())
	if got := e.Query(t, "SELECT version()"); got != e.Version() {
		t.Fatalf("SELECT version() = %q, Version() = %q", got, e.Version())
	}
	parts := strings.SplitN(e.Version(), ".", 3)
	if len(parts) < 3 {
		t.Fatalf("version %q is not major.minor.patch…", e.Version())
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("version %q is not numeric", e.Version())
	}
	// EXECUTE AS exists from ClickHouse 25.11 on.
	if major < 25 || major == 25 && minor < 11 {
		t.Fatalf("ClickHouse %s is older than 25.11: EXECUTE AS cannot be checked", e.Version())
	}
}

func TestOpenSharesOneEngine(t *testing.T) {
	a, b := Open(t), Open(t)
	if a != b {
		t.Fatal("Open returned two engines; chDB allows one per process")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := Open(t).FormatSingleLine(fmt.Sprintf("select %d", i))
			if err == nil && got != fmt.Sprintf("SELECT %d", i) {
				err = fmt.Errorf("formatQuery(select %d) = %q", i, got)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// The statements clickgate generates, each with ClickHouse's own single-line
// rendering and the root of its parse tree.
var clickgateStatements = []struct {
	sql, formatted, ast string
}{
	{
		"CREATE USER IF NOT EXISTS `alice@example.com` IDENTIFIED WITH http SERVER 'clickgate'",
		"CREATE USER IF NOT EXISTS `alice@example.com` IDENTIFIED WITH http SERVER 'clickgate'",
		"CreateUserQuery (children 1)\n AuthenticationData (children 1)\n  Literal 'clickgate'",
	},
	{
		// NOT IDENTIFIED is a synonym; ClickHouse writes it back as no_password.
		"CREATE USER IF NOT EXISTS `bob` NOT IDENTIFIED",
		"CREATE USER IF NOT EXISTS bob IDENTIFIED WITH no_password",
		"CreateUserQuery (children 1)\n AuthenticationData",
	},
	{
		"GRANT `analyst`, `reader` TO `alice@example.com`",
		"GRANT analyst, reader TO `alice@example.com`",
		"GrantQuery",
	},
	{
		"REVOKE `analyst` FROM `alice@example.com`",
		"REVOKE analyst FROM `alice@example.com`",
		"GrantQuery",
	},
	{
		"EXECUTE AS `alice@example.com` SELECT 1",
		"EXECUTE AS `alice@example.com` SELECT 1",
		"ExecuteAsQuery (children 2)\n UserNameWithHost (children 1)\n  Identifier alice@example.com\n SelectWithUnionQuery (children 1)",
	},
	{
		"GRANT IMPERSONATE ON `alice@example.com` TO clickgate_svc",
		"GRANT IMPERSONATE ON `alice@example.com` TO clickgate_svc",
		"GrantQuery",
	},
	{
		"ALTER USER `alice@example.com` VALID UNTIL '2020-01-01 00:00:00'",
		"ALTER USER `alice@example.com` VALID UNTIL '2020-01-01 00:00:00'",
		"CreateUserQuery (children 1)\n Literal '2020-01-01 00:00:00'",
	},
	{
		"DROP USER IF EXISTS `alice@example.com`",
		"DROP USER IF EXISTS `alice@example.com`",
		"DROP USER query",
	},
}

func TestClickgateStatementsParse(t *testing.T) {
	e := Open(t)
	for _, tc := range clickgateStatements {
		t.Run(tc.sql, func(t *testing.T) {
			got, err := e.FormatSingleLine(tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.formatted {
				t.Errorf("formatQuerySingleLine:\n got %q\nwant %q", got, tc.formatted)
			}
			multi, err := e.Format(tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			// ClickHouse's rendering parses to itself.
			if again, err := e.Format(multi); err != nil || again != multi {
				t.Errorf("formatQuery is not stable: %q → %q (%v)", multi, again, err)
			}
			ast, err := e.ParseAST(tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(ast, tc.ast) {
				t.Errorf("EXPLAIN AST:\n%s\nwant it to start with\n%s", ast, tc.ast)
			}
		})
	}
}

func TestHostileIdentifierRoundTrips(t *testing.T) {
	e := Open(t)
	const tail = " IDENTIFIED WITH http SERVER 'clickgate'"
	for _, name := range HostileNames {
		label := name
		if len(label) > 40 {
			label = label[:40]
		}
		t.Run(strconv.Quote(label), func(t *testing.T) {
			quoted, err := chsql.QuoteIdentifier(name)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := e.Identifier(quoted); err != nil || got != name {
				t.Fatalf("%s names %q (%v), want %q", quoted, got, err, name)
			}

			stmt := "CREATE USER IF NOT EXISTS " + quoted + tail
			formatted, err := e.FormatSingleLine(stmt)
			if err != nil {
				t.Fatal(err)
			}
			ident, ok := strings.CutPrefix(formatted, "CREATE USER IF NOT EXISTS ")
			ident, ok2 := strings.CutSuffix(ident, tail)
			if !ok || !ok2 {
				t.Fatalf("formatQuery(%q) = %q: not the same statement", stmt, formatted)
			}
			if got, err := e.Identifier(ident); err != nil || got != name {
				t.Fatalf("formatQuery wrote the user as %s, which names %q (%v), want %q", ident, got, err, name)
			}

			// The other statements take the same identifier.
			for _, s := range []string{
				"GRANT `analyst` TO " + quoted,
				"REVOKE `analyst` FROM " + quoted,
				"GRANT IMPERSONATE ON " + quoted + " TO clickgate_svc",
				"EXECUTE AS " + quoted + " SELECT 1",
				"DROP USER IF EXISTS " + quoted,
			} {
				if _, err := e.Format(s); err != nil {
					t.Error(err)
				}
			}
			ast, err := e.ParseAST("EXECUTE AS " + quoted + " SELECT 1")
			if err != nil {
				t.Fatal(err)
			}
			if want := "\n  Identifier " + name + "\n"; !strings.Contains(ast, want) {
				t.Errorf("EXECUTE AS parse tree\n%s\ndoes not name %q", ast, name)
			}
		})
	}
}

func TestUnquotedHostileNameIsRefusedOrDifferent(t *testing.T) {
	// Guards the test above against an engine that accepts anything.
	e := Open(t)
	if _, err := e.Format("CREATE USER a`b IDENTIFIED WITH http SERVER 'clickgate'"); err == nil {
		t.Error("an unescaped back quote was accepted")
	}
	if got, err := e.Identifier("`a\\nb`"); err != nil || got != "a\nb" {
		t.Errorf("`a\\nb` names %q (%v), want a newline in the name", got, err)
	}
}

func TestInvalidSQLIsASyntaxError(t *testing.T) {
	e := Open(t)
	for _, sql := range []string{
		"SELEC 1",
		"CREATE USER `alice IDENTIFIED WITH http SERVER 'clickgate'",
		"CREATE USER alice IDENTIFIED WITH http SERVER",
		"GRANT TO alice",
		"EXECUTE AS",
	} {
		for name, f := range map[string]func(string) (string, error){
			"Format": e.Format, "FormatSingleLine": e.FormatSingleLine, "ParseAST": e.ParseAST,
		} {
			_, err := f(sql)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("%s(%q) = %v, want an *Error", name, sql, err)
				continue
			}
			if !strings.Contains(err.Error(), "Syntax error") || ce.Code != 62 || ce.Name != "SYNTAX_ERROR" {
				t.Errorf("%s(%q): %v (code %d, name %q), want ClickHouse's syntax error", name, sql, err, ce.Code, ce.Name)
			}
		}
	}
}

func TestQueryAndExec(t *testing.T) {
	e := Open(t)
	if got := e.Query(t, "SELECT 1, 'a\tb' UNION ALL SELECT 2, 'c'"); got != "1\ta\\tb\n2\tc" && got != "2\tc\n1\ta\\tb" {
		t.Errorf("Query = %q", got)
	}
	if _, err := e.Exec("SELECT 'a\x00b'", "TSV"); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("a NUL byte in a query: %v, want an error", err)
	}
	_, err := e.Exec("SELECT * FROM no_such_table", "TSV")
	var ce *Error
	if !errors.As(err, &ce) || ce.Name != "UNKNOWN_TABLE" || !strings.Contains(ce.Message, "no_such_table") {
		t.Errorf("unknown table: %v", err)
	}
}

// chDB installs ClickHouse's crash handlers unless told not to; with them a
// nil dereference in Go kills the process after minutes instead of panicking.
func TestGoPanicsStillWork(t *testing.T) {
	Open(t)
	if changed := preload.Signals.Changed(preload.Snapshot()); len(changed) > 0 {
		t.Fatalf("signal handlers changed since the process started: %v", changed)
	}
	var recovered any
	func() {
		defer func() { recovered = recover() }()
		var p *int
		*p = 1
	}()
	if recovered == nil {
		t.Fatal("nil dereference did not panic")
	}
}

func TestLibraryLocation(t *testing.T) {
	if preload.FromEnv {
		t.Skipf("CHDB_LIB_PATH=%s was set by the caller", LibPath())
	}
	root, err := preload.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want := root + "/node_modules/@chdb/lib-" + npmlib.Platform() + "/libchdb.so"
	if LibPath() != want || os.Getenv(preload.EnvLibPath) != want {
		t.Errorf("LibPath = %q, CHDB_LIB_PATH = %q, want %q", LibPath(), os.Getenv(preload.EnvLibPath), want)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err == nil && !strings.Contains(string(maps), want) {
		t.Errorf("%s is not mapped into the process", want)
	}
}
