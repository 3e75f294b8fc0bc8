package chdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chdb/npmlib"
	"github.com/clickgate/clickgate/internal/chsql"
)

// The process's one engine, shared by every test here (chDB runs one per
// process), on a directory TestMain removes.
var (
	testEngine *Engine
	testDir    string
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(m.Run()) // a subprocess for one test; it opens what it needs
	}
	dir, err := os.MkdirTemp("", "clickgate-chdb-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testDir = filepath.Join(dir, "data")
	// A missing library fails the tests with the install hint: make test
	// installs it, so its absence is a broken setup, not a reason to skip.
	testEngine, err = Open(testDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chdb tests: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	testEngine.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helperEnv makes the test binary, run again, a subprocess for one test.
const helperEnv = "CLICKGATE_CHDB_TEST_HELPER"

func exec1(t *testing.T, sql string, s Settings) string {
	t.Helper()
	out, err := testEngine.Exec(context.Background(), sql, "TSV", s)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return strings.TrimSuffix(string(out), "\n")
}

func TestVersionAndOneEnginePerProcess(t *testing.T) {
	t.Logf("ClickHouse %s from %s on %s", testEngine.Version(), testEngine.LibPath(), testEngine.Path())
	if !strings.HasPrefix(testEngine.Version(), "26.") {
		t.Errorf("version %q, want the 26.x engine of the npm package chdb", testEngine.Version())
	}
	same, err := Open(testDir)
	if err != nil || same != testEngine {
		t.Fatalf("Open(same directory) = %p, %v; want the running engine", same, err)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "one engine per process") {
		t.Fatalf("Open(another directory): %v", err)
	}
}

func TestStreamsSelectsAndRunsOtherStatements(t *testing.T) {
	exec1(t, "CREATE TABLE IF NOT EXISTS stream_t (n UInt64) ENGINE = MergeTree ORDER BY n", Settings{})
	exec1(t, "INSERT INTO stream_t SELECT number FROM numbers(1000000)", Settings{})
	if got := exec1(t, "SELECT count(), sum(n) FROM stream_t", Settings{}); got != "1000000\t499999500000" {
		t.Fatalf("count, sum = %q", got)
	}
	// A large result streams in blocks; closing early cancels it and frees
	// the engine for the next query.
	r, err := testEngine.Query(context.Background(), "SELECT n, toString(n) FROM stream_t ORDER BY n", "TabSeparatedWithNamesAndTypes", Settings{Readonly: 2})
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 64)
	if _, err := io.ReadFull(r, head); err != nil || !strings.HasPrefix(string(head), "n\ttoString(n)\nUInt64\tString\n0\t0\n1\t1\n") {
		t.Fatalf("head %q, %v", head, err)
	}
	r.Close()
	r.Close() // twice is fine
	if got := exec1(t, "EXPLAIN PLAN SELECT count() FROM stream_t", Settings{}); !strings.Contains(got, "ReadFromMergeTree") && !strings.Contains(got, "ReadFromPreparedSource") {
		t.Errorf("EXPLAIN PLAN:\n%s", got)
	}
}

func TestErrorsCarryClickHouseMessages(t *testing.T) {
	_, err := testEngine.Exec(context.Background(), "SELEC 1", "TSV", Settings{})
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != 62 || !strings.Contains(ce.Message, "Syntax error") {
		t.Fatalf("syntax error: %#v", err)
	}
	// Found while streaming: the rows before, then the error from Read.
	r, err := testEngine.Query(context.Background(), "SELECT throwIf(number = 200000, 'boom') FROM numbers(300000)", "TSV", Settings{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(r)
	r.Close()
	if !errors.As(err, &ce) || ce.Code != 395 || !strings.Contains(ce.Message, "boom") {
		t.Fatalf("error while streaming: %v", err)
	}
	// One statement at a time, as chDB allows.
	if _, err := testEngine.Exec(context.Background(), "SELECT 1; SELECT 2", "TSV", Settings{}); !errors.As(err, &ce) || !strings.Contains(ce.Message, "Multi-statements are not allowed") {
		t.Fatalf("two statements: %v", err)
	}
	// A NUL byte goes through (the query has an explicit length): ClickHouse,
	// not a truncated query, answers.
	if _, err := testEngine.Exec(context.Background(), "SELECT 1\x00; DROP TABLE stream_t", "TSV", Settings{}); err == nil {
		t.Fatal("a query with a NUL byte ran")
	}
}

func TestReadonlyIsTheEngines(t *testing.T) {
	exec1(t, "CREATE TABLE IF NOT EXISTS ro_t (s String) ENGINE = MergeTree ORDER BY s", Settings{})
	exec1(t, "INSERT INTO ro_t VALUES ('before')", Settings{})
	for _, level := range []int{1, 2} {
		ro := Settings{Readonly: level, Values: map[string]string{"max_execution_time": "7"}}
		if got := exec1(t, "SELECT getSetting('readonly'), getSetting('max_execution_time')", ro); got != fmt.Sprintf("%d\t7", level) {
			t.Errorf("readonly %d: settings %q", level, got)
		}
		for _, sql := range []string{
			"INSERT INTO ro_t VALUES ('x')",
			"INSERT INTO ro_t SELECT 'y' SETTINGS readonly = 0",
			"CREATE TABLE ro_2 (a Int8) ENGINE = Memory",
			"DROP TABLE ro_t",
			"SET readonly = 0",
		} {
			_, err := testEngine.Exec(context.Background(), sql, "TSV", ro)
			var ce *Error
			if !errors.As(err, &ce) || ce.Code != 164 {
				t.Errorf("readonly %d: %s: %v, want READONLY (164)", level, sql, err)
			}
		}
		// A query cannot lower readonly for the next one either.
		if got := exec1(t, "SELECT getSetting('readonly')", ro); got != fmt.Sprint(level) {
			t.Errorf("readonly %d became %s", level, got)
		}
	}
	// Writing again takes a fresh session; the table and its row are there.
	exec1(t, "INSERT INTO ro_t VALUES ('after')", Settings{})
	if got := exec1(t, "SELECT groupArray(s) FROM (SELECT s FROM ro_t ORDER BY s)", Settings{Readonly: 2}); got != "['after','before']" {
		t.Errorf("rows = %s", got)
	}
	// A statement that sets readonly itself does not stick either.
	exec1(t, "SET readonly = 1", Settings{})
	exec1(t, "INSERT INTO ro_t VALUES ('later')", Settings{})
}

func TestNoWritesBeyondTheEngine(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(csv, []byte("a,b\n1,x\n2,y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Reading local files is what chdb:// is for (readonly 2 allows table
	// functions; readonly 1 does not).
	if got := exec1(t, "SELECT count() FROM file("+chsql.Literal(csv)+")", Settings{Readonly: 2}); got != "2" {
		t.Errorf("file() read %s rows", got)
	}
	out := filepath.Join(dir, "out.csv")
	_, err := testEngine.Exec(context.Background(), "INSERT INTO FUNCTION file("+chsql.Literal(out)+", 'CSV', 'a UInt8') SELECT 1", "TSV", Settings{})
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != 497 || !strings.Contains(ce.Message, "WRITE ON FILE") {
		t.Errorf("INSERT INTO FUNCTION file(): %v, want ACCESS_DENIED for WRITE ON FILE", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("the file was written")
	}
	// INTO OUTFILE (written by clickhouse-local itself, which readonly does
	// not stop), SET and USE (the session all queries share) are refused at
	// readonly 1 and 2 on the word of ClickHouse's parser; at 0 they run.
	outfile := filepath.Join(dir, "outfile.tsv")
	for _, level := range []int{1, 2} {
		for _, sql := range []string{
			"SELECT 1 INTO OUTFILE " + chsql.Literal(outfile),
			"SELECT 1 INTO OUTFILE " + chsql.Literal(outfile) + " APPEND",
			"SET max_threads = 1",
			"USE system",
		} {
			_, err := testEngine.Exec(context.Background(), sql, "TSV", Settings{Readonly: level})
			if !errors.As(err, &ce) || ce.Code != 164 || !strings.Contains(ce.Message, "acts beyond itself") {
				t.Errorf("readonly %d: %s: %v", level, sql, err)
			}
		}
	}
	if _, err := os.Stat(outfile); err == nil {
		t.Fatal("INTO OUTFILE wrote a file at readonly")
	}
	// Text that merely looks like it is a SELECT like any other.
	if got := exec1(t, "SELECT 'INTO OUTFILE x; SET a = 1'", Settings{Readonly: 1}); got != "INTO OUTFILE x; SET a = 1" {
		t.Errorf("SELECT of a string: %q", got)
	}
	exec1(t, "SELECT 1 INTO OUTFILE "+chsql.Literal(outfile), Settings{})
	if _, err := os.Stat(outfile); err != nil {
		t.Errorf("INTO OUTFILE at readonly 0: %v", err)
	}
}

func TestSettings(t *testing.T) {
	s := Settings{Values: map[string]string{"log_comment": `it's "quoted" \ and long`, "max_threads": "3"}}
	if got := exec1(t, "SELECT getSetting('log_comment'), getSetting('max_threads')", s); got != `it\'s "quoted" \\ and long`+"\t3" {
		t.Errorf("settings = %q", got)
	}
	for _, bad := range []map[string]string{{"max_threads = 1, readonly": "0"}, {"readonly": "0"}} {
		if _, err := testEngine.Exec(context.Background(), "SELECT 1", "TSV", Settings{Values: bad}); err == nil {
			t.Errorf("settings %v accepted", bad)
		}
	}
	if _, err := testEngine.Exec(context.Background(), "SELECT 1", "TSV", Settings{Readonly: 3}); err == nil {
		t.Error("readonly 3 accepted")
	}
}

func TestOneQueryAtATime(t *testing.T) {
	r, err := testEngine.Query(context.Background(), "SELECT number FROM numbers(10)", "TSV", Settings{})
	if err != nil {
		t.Fatal(err)
	}
	// While a result is open, others wait; a context that ends stops the wait.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := testEngine.Query(ctx, "SELECT 1", "TSV", Settings{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("query while another is open: %v", err)
	}
	r.Close()

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ro := Settings{Readonly: 1 + i%2, Values: map[string]string{"max_threads": fmt.Sprint(1 + i%3)}}
			if i%4 == 0 {
				ro = Settings{}
			}
			out, err := testEngine.Exec(context.Background(), fmt.Sprintf("SELECT %d, getSetting('readonly'), getSetting('max_threads')", i), "TSV", ro)
			if err == nil && ro.Values != nil && string(out) != fmt.Sprintf("%d\t%d\t%s\n", i, ro.Readonly, ro.Values["max_threads"]) {
				err = fmt.Errorf("query %d with %+v: %q", i, ro, out)
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

func TestCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r, err := testEngine.Query(ctx, "SELECT number FROM numbers(100000000)", "TSV", Settings{Readonly: 2})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(r); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
	r.Close()
	if got := exec1(t, "SELECT 42", Settings{}); got != "42" {
		t.Fatalf("next query: %q", got)
	}
}

// A process without the library gets an error that says how to install it,
// from Open, not a crash at start-up: the test binary, run again without
// the library, imports this package as clickgate does.
func TestMissingLibrary(t *testing.T) {
	if os.Getenv(helperEnv) == "missing" {
		_, err := Open(t.TempDir())
		fmt.Printf("OPEN ERROR: %v\n", err)
		if !errors.Is(err, ErrLibraryNotFound) {
			t.Fatal("not ErrLibraryNotFound")
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMissingLibrary$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=missing", EnvLibPath+"=/nonexistent/libchdb.so")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := "libchdb.so not found: install the npm package chdb (npm install chdb) and set CHDB_LIB_PATH=…/node_modules/@chdb/lib-" + npmlib.Platform() + "/libchdb.so"
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), "/nonexistent/libchdb.so") {
		t.Fatalf("output does not say %q:\n%s", want, out)
	}
}

// Close frees the process's one engine for another directory; the tables of
// the first stay on disk. (In a subprocess: the others share this one's.)
func TestCloseAndOpenAgain(t *testing.T) {
	if os.Getenv(helperEnv) == "reopen" {
		a, b := t.TempDir(), t.TempDir()
		e, err := Open(a)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Exec(context.Background(), "CREATE TABLE kept (n UInt8) ENGINE = MergeTree ORDER BY n", "TSV", Settings{}); err != nil {
			t.Fatal(err)
		}
		e.Close()
		if _, err := e.Exec(context.Background(), "SELECT 1", "TSV", Settings{}); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Fatalf("query on a closed engine: %v", err)
		}
		for _, dir := range []string{b, a} {
			e, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			out, err := e.Exec(context.Background(), "EXISTS TABLE kept", "TSV", Settings{})
			if err != nil || string(out) != map[bool]string{true: "1\n", false: "0\n"}[dir == a] {
				t.Fatalf("EXISTS TABLE kept in %s: %q, %v", dir, out, err)
			}
			e.Close()
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCloseAndOpenAgain$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=reopen")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// With the engine running, a nil-pointer dereference is still a Go panic,
// reported at once, not ClickHouse's crash handler (which would hang the
// process for minutes): Open put the Go runtime's signal handlers back.
func TestGoPanicsStayGoPanics(t *testing.T) {
	if os.Getenv(helperEnv) == "panic" {
		if _, err := Open(os.Getenv("CLICKGATE_CHDB_TEST_DIR")); err != nil {
			t.Fatal(err)
		}
		var p *Engine
		_ = p.path // SIGSEGV
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestGoPanicsStayGoPanics$")
	cmd.Env = append(os.Environ(), helperEnv+"=panic", "CLICKGATE_CHDB_TEST_DIR="+t.TempDir())
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "invalid memory address or nil pointer dereference") || time.Since(start) > 30*time.Second {
		t.Fatalf("after %v: %v\n%s", time.Since(start), err, out)
	}
}
