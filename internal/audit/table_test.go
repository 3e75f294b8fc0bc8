package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
)

// The table sink runs against both servers clickgate supports: 18.16 (the
// old layout) and 26.7 (DateTime64, LowCardinality, insert deduplication
// tokens).
var releases = []chtest.Release{chtest.Debian1816, chtest.ChDB267}

func eachRelease(t *testing.T, fn func(t *testing.T, srv *chtest.Server)) {
	for _, rel := range releases {
		t.Run(rel.String(), func(t *testing.T) { fn(t, chtest.Start(t, chtest.Options{Release: rel})) })
	}
}

// fastRetries makes the sink retry every few milliseconds.
func fastRetries(t *testing.T) {
	lo, hi := minBackoff, maxBackoff
	minBackoff, maxBackoff = 10*time.Millisecond, 100*time.Millisecond
	t.Cleanup(func() { minBackoff, maxBackoff = lo, hi })
}

func tableOptions(t *testing.T, url string) *TableOptions {
	return &TableOptions{URL: url, Table: "audit_" + strings.ReplaceAll(newUUID()[:8], "-", ""), BatchRows: 50,
		FlushInterval: 20 * time.Millisecond, SpoolDir: t.TempDir()}
}

func openTrail(t *testing.T, opts Options) *Log {
	t.Helper()
	l, err := OpenOptions(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func ask(t *testing.T, srv *chtest.Server, sql string) string {
	t.Helper()
	return srv.Query(t, "default", "", sql)
}

func askInt(t *testing.T, srv *chtest.Server, sql string) int {
	t.Helper()
	n, err := strconv.Atoi(ask(t, srv, sql))
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// waitFor polls until cond holds; the minute only bounds a failing test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after a minute", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func queryEvent(user string, i int) Record {
	return Record{Type: Query, User: user, Roles: []string{"r"}, Interface: InterfaceGateway, QueryKind: "SELECT",
		Query: fmt.Sprintf("SELECT %d", i), Outcome: "ok"}
}

// Events written concurrently by many goroutines are in the table exactly
// once, and the table is what Schema describes.
func TestTableConcurrentWritesExactlyOnce(t *testing.T) {
	eachRelease(t, func(t *testing.T, srv *chtest.Server) {
		to := tableOptions(t, srv.HTTPURL)
		l := openTrail(t, Options{Table: to})
		const writers, each = 32, 150
		var wg sync.WaitGroup
		for g := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					l.Write(queryEvent(fmt.Sprintf("user%d", g), i))
				}
			}()
		}
		wg.Wait()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		name := "default." + to.Table
		if got := ask(t, srv, "SELECT count(), uniqExact(event_id), uniqExact(user) FROM "+name+" FINAL"); got != fmt.Sprintf("%d\t%d\t%d", writers*each, writers*each, writers) {
			t.Errorf("count, distinct ids, users: %s; want %d events once each", got, writers*each)
		}
		// A burst faster than the inserts may spill to the spool (Write
		// never waits); all of it reaches the table, none is lost.
		if s := l.Stats(); s.TableWritten != writers*each || s.Dropped != 0 || s.Spooled != s.Replayed {
			t.Errorf("stats %+v", s)
		}
		want, err := Schema(srv.Version, "default", to.Table, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := ask(t, srv, "SELECT name, type FROM system.columns WHERE database = 'default' AND table = '"+to.Table+"' FORMAT TabSeparatedRaw")
		for _, line := range strings.Split(got, "\n") {
			name, typ, _ := strings.Cut(line, "\t")
			if !strings.Contains(want, "    "+name+" "+typ+",") && !strings.Contains(want, "    "+name+" "+typ+"\n") {
				t.Errorf("column %s %s is not in Schema(%s):\n%s", name, typ, srv.Version, want)
			}
		}
	})
}

// Every field comes back from the table as it went into the file: the
// roles array, the microsecond time, unicode, quotes, backslashes and
// control characters in the query text.
func TestTableRoundTrip(t *testing.T) {
	eachRelease(t, func(t *testing.T, srv *chtest.Server) {
		path := filepath.Join(t.TempDir(), "audit.log")
		to := tableOptions(t, srv.HTTPURL)
		l := openTrail(t, Options{File: path, Table: to})
		at := time.Date(2026, 3, 4, 7, 8, 9, 123456789, time.UTC)
		l.now = func() time.Time { at = at.Add(time.Microsecond); return at }
		l.Write(everyField())
		l.Write(Record{Type: LoginFailure, User: "bob", Roles: []string{}, FailureReason: "token expired", ClientPort: 1})
		l.Write(Record{Type: RefreshReplay, ClientID: "c-1", User: "bob", Subject: "s"})
		l.Write(Record{Type: ToolCall, Tool: "run_query", Arguments: `{"x":"\\\""}`, User: "a\x00b"})
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		fromFile, err := ReadFile(path, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		tr, err := NewTableReader(*to)
		if err != nil {
			t.Fatal(err)
		}
		fromTable, err := tr.Read(context.Background(), Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(fromFile) != 4 || fmt.Sprintf("%+v", fromFile) != fmt.Sprintf("%+v", fromTable) {
			t.Errorf("file and table differ:\nfile  %+v\ntable %+v", fromFile, fromTable)
		}
		want := everyField()
		want.EventID, want.EventTimeMicroseconds = fromTable[0].EventID, "2026-03-04T07:08:09.123457Z"
		if fmt.Sprintf("%+v", fromTable[0]) != fmt.Sprintf("%+v", want) {
			t.Errorf("round trip\n got %+v\nwant %+v", fromTable[0], want)
		}
		if ids := map[string]bool{fromTable[0].EventID: true, fromTable[1].EventID: true, fromTable[2].EventID: true, fromTable[3].EventID: true}; len(ids) != 4 || ids[""] {
			t.Errorf("ids: %+v", fromTable)
		}
		// The query text in ClickHouse is the bytes, not an escaped form.
		if got := ask(t, srv, "SELECT hex(query) FROM default."+to.Table+" WHERE type = 'Query'"); got != strings.ToUpper(fmt.Sprintf("%x", want.Query)) {
			t.Errorf("query bytes %s", got)
		}
	})
}

// ClickHouse goes away mid-run and comes back on the same address (here a
// fresh server: the sink creates its table again): the events written
// meanwhile are spooled, then replayed, none lost, none twice, and
// batches reach ClickHouse oldest first, so each person's events are
// inserted in their order.
func TestTableOutage(t *testing.T) {
	eachRelease(t, func(t *testing.T, first *chtest.Server) {
		fastRetries(t)
		rel := newRelay(t, first.HTTPAddr)
		to := tableOptions(t, rel.url())
		l := openTrail(t, Options{Table: to})
		name := "default." + to.Table
		const users, before, during = 4, 100, 400
		for i := range before {
			l.Write(queryEvent(fmt.Sprintf("u%d", i%users), i))
		}
		// In the server and acknowledged: an insert whose answer the relay
		// cut would be spooled too.
		waitFor(t, "in the first server", func() bool {
			return askInt(t, first, "SELECT count() FROM "+name) == before && l.Stats().TableWritten == before
		})

		rel.down()
		first.Stop()
		for i := before; i < before+during; i++ {
			l.Write(queryEvent(fmt.Sprintf("u%d", i%users), i))
		}
		waitFor(t, "spooled", func() bool { return l.Stats().Spooled == during })
		if files, _ := l.Stats().SpoolFiles, 0; files < 2 {
			t.Errorf("%d spool files; the test wants several batches", files)
		}
		if err := l.Ready(); err != nil {
			t.Errorf("not required, so ready: %v", err)
		}

		// The second server: the table as the sink would create it, with
		// merges stopped so that each insert stays a part of its own.
		second := chtest.Start(t, chtest.Options{Release: first.Release})
		ddl, err := Schema(second.Version, "default", to.Table, 0)
		if err != nil {
			t.Fatal(err)
		}
		ask(t, second, ddl)
		ask(t, second, "SYSTEM STOP MERGES "+name)
		rel.up(second.HTTPAddr)
		waitFor(t, "replayed", func() bool { return l.Stats().SpoolFiles == 0 })
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if got := ask(t, second, "SELECT count(), uniqExact(event_id) FROM "+name+" FINAL"); got != fmt.Sprintf("%d\t%d", during, during) {
			t.Errorf("second server: %s, want %d events once each", got, during)
		}
		if s := l.Stats(); s.Spooled != during || s.Replayed != during || s.Dropped != 0 || s.TableWritten != before+during {
			t.Errorf("stats %+v", s)
		}
		// Per person, in time order: the query numbers grow, and so do the
		// insert (block) numbers of the parts that hold them.
		out := ask(t, second, "SELECT user, query, toUInt64(splitByChar('_', _part)[2]) FROM "+name+
			" ORDER BY user, event_time, event_time_microseconds FORMAT TSV")
		last := map[string][2]int{}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Split(line, "\t")
			n, _ := strconv.Atoi(strings.TrimPrefix(f[1], "SELECT "))
			block, _ := strconv.Atoi(f[2])
			if p, ok := last[f[0]]; ok && (n <= p[0] || block < p[1]) {
				t.Fatalf("%s: query %d (block %d) after query %d (block %d)", f[0], n, block, p[0], p[1])
			}
			last[f[0]] = [2]int{n, block}
		}
	})
}

// A spool left by an earlier process (ClickHouse was away when it
// stopped) is replayed when the next one starts; a half-written file (a
// crash during the write) is not a batch and is removed.
func TestSpoolFromPreviousProcess(t *testing.T) {
	eachRelease(t, func(t *testing.T, srv *chtest.Server) {
		fastRetries(t)
		rel := newRelay(t, srv.HTTPAddr)
		rel.down()
		to := tableOptions(t, rel.url())
		l := openTrail(t, Options{Table: to})
		const n = 230
		for i := range n {
			l.Write(queryEvent("alice", i))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if s := l.Stats(); s.Spooled != n || s.TableWritten != 0 || s.SpoolFiles == 0 {
			t.Fatalf("after Close with ClickHouse away: %+v", s)
		}
		tmp := filepath.Join(to.SpoolDir, "0000000000000000001-x.jsonl.tmp")
		os.WriteFile(tmp, []byte(`{"type":"Query","us`), 0o600)

		rel.up(srv.HTTPAddr)
		l2 := openTrail(t, Options{Table: to})
		waitFor(t, "replayed", func() bool { return l2.Stats().Replayed == n })
		if err := l2.Close(); err != nil {
			t.Fatal(err)
		}
		if got := askInt(t, srv, "SELECT count() FROM default."+to.Table+" FINAL"); got != n {
			t.Errorf("%d events, want %d", got, n)
		}
		if left, _ := os.ReadDir(to.SpoolDir); len(left) != 1 || left[0].Name() != cleanMarker {
			t.Errorf("spool holds %v, want only the clean-close marker", left)
		}
	})
}

// A start that finds no clean-close marker (the last process was killed
// with events in memory) re-sends the file's last minute of events to the
// table; the table shows each once; a start after a clean close does not.
func TestRecoveryAfterUncleanStop(t *testing.T) {
	eachRelease(t, func(t *testing.T, srv *chtest.Server) {
		to := tableOptions(t, srv.HTTPURL)
		file := filepath.Join(t.TempDir(), "audit.jsonl")
		// What a killed process leaves: events in the file, of which the
		// table got only the first ones, and no marker.
		l := openTrail(t, Options{File: file, Table: to})
		for i := range 30 {
			l.Write(queryEvent("carol", i))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		onlyFile := openTrail(t, Options{File: file})
		for i := 30; i < 50; i++ {
			onlyFile.Write(queryEvent("carol", i))
		}
		onlyFile.Close()
		if err := os.Remove(filepath.Join(to.SpoolDir, cleanMarker)); err != nil {
			t.Fatal(err)
		}

		l = openTrail(t, Options{File: file, Table: to})
		waitFor(t, "recovered", func() bool { return l.Stats().Replayed == 50 })
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if got := askInt(t, srv, "SELECT count() FROM default."+to.Table+" FINAL"); got != 50 {
			t.Errorf("%d events after recovery, want 50", got)
		}
		l = openTrail(t, Options{File: file, Table: to})
		l.Close()
		if got := l.Stats().Replayed; got != 0 {
			t.Errorf("a start after a clean close re-sent %d events", got)
		}
	})
}

// Close inserts what is still waiting for FlushInterval or BatchRows.
func TestCloseFlushes(t *testing.T) {
	eachRelease(t, func(t *testing.T, srv *chtest.Server) {
		to := tableOptions(t, srv.HTTPURL)
		to.BatchRows, to.FlushInterval = 1_000_000, time.Hour
		l := openTrail(t, Options{Table: to})
		for i := range 77 {
			l.Write(queryEvent("bob", i))
		}
		if got := askInt(t, srv, "SELECT count() FROM default."+to.Table); got != 0 {
			t.Fatalf("%d events before Close; the test wants them waiting", got)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if got := askInt(t, srv, "SELECT count() FROM default."+to.Table); got != 77 {
			t.Errorf("%d events after Close, want 77", got)
		}
	})
}

// A batch inserted twice (the first answer was lost, the spool replays it)
// shows once: through FINAL on every release, and on 26.7 not even stored
// twice (insert_deduplication_token).
func TestReplayedBatchDeduplicated(t *testing.T) {
	eachRelease(t, func(t *testing.T, srv *chtest.Server) {
		to := tableOptions(t, srv.HTTPURL)
		var buf strings.Builder
		l := openTrail(t, Options{Table: to})
		w := New(&buf)
		for i := range 10 {
			w.Write(queryEvent("carol", i))
		}
		batch := l.table.decode([]byte(buf.String()))
		l.Close() // the sink's goroutine ends; this test inserts in its place
		l.table.ctx = context.Background()
		for range 2 {
			if err := l.table.insert(batch, "batch-token-1"); err != nil {
				t.Fatal(err)
			}
		}
		name := "default." + to.Table
		if got := askInt(t, srv, "SELECT count() FROM "+name+" FINAL"); got != 10 {
			t.Errorf("FINAL: %d events, want 10", got)
		}
		stored := askInt(t, srv, "SELECT count() FROM "+name)
		if l.table.lay.dedupToken && stored != 10 {
			t.Errorf("stored %d rows; the deduplication token should have kept 10", stored)
		}
		t.Logf("%s: %d rows stored for 10 events inserted twice", srv.Version, stored)
	})
}

// A TTL is kept where ClickHouse can (19.6+) and refused, saying why,
// where it cannot.
func TestTTL(t *testing.T) {
	eachRelease(t, func(t *testing.T, srv *chtest.Server) {
		to := tableOptions(t, srv.HTTPURL)
		to.TTL = 180 * 24 * time.Hour
		l, err := OpenOptions(context.Background(), Options{Table: to})
		if srv.Release == chtest.Debian1816 {
			if err == nil || !strings.Contains(err.Error(), "no TTL") || !strings.Contains(err.Error(), "19.6") {
				t.Fatalf("TTL on %s: %v", srv.Version, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if got := ask(t, srv, "SHOW CREATE TABLE default."+to.Table); !strings.Contains(got, "TTL event_time + toIntervalSecond(15552000)") {
			t.Errorf("no TTL in %s", got)
		}
	})
}

// Filters select the same events from the file and the table; Follow
// shows new events once.
func TestReadFilters(t *testing.T) {
	eachRelease(t, func(t *testing.T, srv *chtest.Server) {
		path := filepath.Join(t.TempDir(), "audit.log")
		to := tableOptions(t, srv.HTTPURL)
		l := openTrail(t, Options{File: path, Table: to})
		at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
		l.now = func() time.Time { at = at.Add(700 * time.Millisecond); return at }
		types := []string{Query, LoginSuccess, ToolCall, QueryRefused}
		for i := range 40 {
			r := queryEvent([]string{"ann", "ben"}[i%2], i)
			r.Type = types[i%4]
			l.Write(r)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		tr, err := NewTableReader(*to)
		if err != nil {
			t.Fatal(err)
		}
		since := time.Date(2026, 5, 1, 10, 0, 10, 500_000_000, time.UTC)
		for _, tc := range []struct {
			name string
			f    Filter
			want int
		}{
			{"all", Filter{}, 40},
			{"user", Filter{User: "ann"}, 20},
			{"types", Filter{Types: []string{Query, ToolCall}}, 20},
			{"user and type", Filter{User: "ben", Types: []string{LoginSuccess}}, 10},
			{"since, within a second", Filter{Since: since}, 26},
			{"limit: the newest", Filter{Limit: 3}, 3},
			{"no such user", Filter{User: "ann' OR '1'='1"}, 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				file, err := ReadFile(path, tc.f)
				if err != nil {
					t.Fatal(err)
				}
				table, err := tr.Read(context.Background(), tc.f)
				if err != nil {
					t.Fatal(err)
				}
				if len(file) != tc.want || fmt.Sprintf("%+v", file) != fmt.Sprintf("%+v", table) {
					t.Errorf("%d from the file, %d from the table, want %d:\n%+v\n%+v", len(file), len(table), tc.want, file, table)
				}
				if tc.f.Limit > 0 && len(file) > 0 && file[len(file)-1].Query != "SELECT 39" {
					t.Errorf("limit: not the newest: %+v", file)
				}
			})
		}
		// Follow: the first poll, then one new event, each once.
		l2 := openTrail(t, Options{Table: to})
		ctx, cancel := context.WithCancel(context.Background())
		var got []string
		done := make(chan error)
		go func() {
			done <- tr.Follow(ctx, Filter{User: "ann", Limit: 2}, 20*time.Millisecond, func(r Record) error {
				got = append(got, r.Query)
				if len(got) == 2 {
					l2.Write(queryEvent("ann", 99))
				}
				if len(got) == 3 {
					cancel()
				}
				return nil
			})
		}()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if want := []string{"SELECT 36", "SELECT 38", "SELECT 99"}; !slices.Equal(got, want) {
			t.Errorf("follow: %v, want %v", got, want)
		}
	})
}

func startBench(b *testing.B) string {
	return chtest.Start(b, chtest.Options{}).HTTPURL
}
