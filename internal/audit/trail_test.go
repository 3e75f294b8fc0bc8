package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Rotation by size keeps MaxFiles rotated files, each within MaxSize, and
// drops the oldest; ReadFile reads them back in order.
func TestFileRotation(t *testing.T) {
	for _, tc := range []struct {
		maxFiles, wantRotated int
	}{{3, 3}, {1, 1}, {0, defaultMaxFiles}} {
		t.Run(fmt.Sprint(tc.maxFiles), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			const maxSize = 2000
			l := openTrail(t, Options{File: path, MaxSize: maxSize, MaxFiles: tc.maxFiles})
			const n = 300
			for i := range n {
				l.Write(queryEvent("alice", i))
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= tc.wantRotated+1; i++ {
				_, err := os.Stat(fmt.Sprintf("%s.%d", path, i))
				if i <= tc.wantRotated && err != nil || i > tc.wantRotated && err == nil {
					t.Errorf("%s.%d: %v", path, i, err)
				}
			}
			matches, _ := filepath.Glob(path + "*")
			for _, p := range matches {
				fi, _ := os.Stat(p)
				if fi.Size() > maxSize || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: %d bytes, mode %v", p, fi.Size(), fi.Mode().Perm())
				}
			}
			// What is kept is the newest events, in order, without a gap.
			recs, err := ReadFile(path, Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 || recs[len(recs)-1].Query != fmt.Sprintf("SELECT %d", n-1) {
				t.Fatalf("kept %d events", len(recs))
			}
			first := n - len(recs)
			for i, r := range recs {
				if r.Query != fmt.Sprintf("SELECT %d", first+i) {
					t.Fatalf("event %d is %q, want SELECT %d", i, r.Query, first+i)
				}
			}
		})
	}
}

// Reopen after logrotate renamed the file writes to a new file at the
// path; the renamed file keeps what was written before.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l := openTrail(t, Options{File: path})
	l.Write(queryEvent("before", 1))
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	l.Write(queryEvent("before", 2)) // still the renamed file, as logrotate expects until SIGHUP
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Write(queryEvent("after", 3))
	l.Close()
	for p, want := range map[string]string{path + ".old": "before before", path: "after"} {
		recs, err := ReadFile(p, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		var users []string
		for _, r := range recs {
			users = append(users, r.User)
		}
		if got := strings.Join(users, " "); got != want {
			t.Errorf("%s: %q, want %q", p, got, want)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("reopened file: %v %v", fi, err)
	}
	// Nothing to reopen: nil, standard error, New's writer.
	for _, l := range []*Log{nil, New(&strings.Builder{})} {
		if err := l.Reopen(); err != nil {
			t.Error(err)
		}
	}
}

// closedPort returns a URL where nothing listens.
func closedPort(t *testing.T) string {
	r := newRelay(t, "127.0.0.1:1")
	r.down()
	return r.url()
}

// ClickHouse away and the spool at its bound: events are dropped and
// counted (metric and Stats), the spool never passes its bound, and a
// Required trail with no other sink is not Ready.
func TestSpoolBoundDrops(t *testing.T) {
	fastRetries(t)
	reg := prometheus.NewPedanticRegistry()
	to := &TableOptions{URL: closedPort(t), BatchRows: 10, FlushInterval: 20 * time.Millisecond, SpoolDir: t.TempDir(), SpoolMaxBytes: 6000}
	l := openTrail(t, Options{Table: to, Required: true, Registerer: reg})
	const n = 200
	for i := range n {
		l.Write(queryEvent("dave", i))
	}
	waitFor(t, "spooled or dropped", func() bool { s := l.Stats(); return s.Spooled+s.Dropped == n })
	s := l.Stats()
	want := fmt.Sprintf("clickgate_audit_events_dropped_total=%d clickgate_audit_events_replayed_total=0 clickgate_audit_events_spooled_total=%d "+
		"clickgate_audit_events_written_total{sink=file}=0 clickgate_audit_events_written_total{sink=table}=0", s.Dropped, s.Spooled)
	if got := gather(t, reg); got != want {
		t.Errorf("metrics\n got %s\nwant %s", got, want)
	}
	if s.Dropped == 0 || s.SpoolBytes > to.SpoolMaxBytes || s.TableWritten != 0 {
		t.Errorf("stats %+v; want drops, spool ≤ %d", s, to.SpoolMaxBytes)
	}
	// Ready says so once the spool cannot take even one more event: a
	// small batch that still fits is spooled, and makes the trail ready
	// again, so how full the spool ends depends on how the events were
	// batched. One event at a time until it is refused.
	extra := 0
	waitFor(t, "not ready", func() bool {
		if l.Ready() != nil {
			return true
		}
		l.Write(queryEvent("dave", n+extra))
		extra++
		return false
	})
	err := l.Ready()
	if err == nil || !strings.Contains(err.Error(), "spool is full") || !strings.Contains(err.Error(), "no audit file") {
		t.Errorf("Ready = %v", err)
	}
	l.Close()
	if s = l.Stats(); s.SpoolBytes > to.SpoolMaxBytes {
		t.Errorf("stats %+v; want spool ≤ %d", s, to.SpoolMaxBytes)
	}
	var onDisk int64
	entries, _ := os.ReadDir(to.SpoolDir)
	for _, e := range entries {
		fi, _ := e.Info()
		onDisk += fi.Size()
	}
	if onDisk != s.SpoolBytes {
		t.Errorf("spool: %d bytes on disk, %d counted", onDisk, s.SpoolBytes)
	}
	if got := gather(t, reg); got != "" {
		t.Errorf("metrics still registered after Close: %s", got)
	}
}

// Ready: nil unless Required; when Required, nil while one sink can
// persist (a writable file, or a table that takes inserts, or a spool
// with room), else an error saying why.
func TestReady(t *testing.T) {
	fastRetries(t)
	dead := closedPort(t)
	full := func() *TableOptions {
		return &TableOptions{URL: dead, BatchRows: 1, FlushInterval: time.Hour, SpoolDir: t.TempDir(), SpoolMaxBytes: 1}
	}
	roomy := func() *TableOptions { o := full(); o.SpoolMaxBytes = 0; return o }
	hasDevFull := false
	if _, err := os.Stat("/dev/full"); err == nil {
		hasDevFull = true
	}
	for _, tc := range []struct {
		name    string
		opts    Options
		devFull bool
		want    string // "" ready
	}{
		{"not required, nothing works", Options{File: "/dev/full", Table: full()}, true, ""},
		{"file works", Options{File: filepath.Join(t.TempDir(), "a.log"), Table: full(), Required: true}, false, ""},
		{"file full, spool has room", Options{File: "/dev/full", Table: roomy(), Required: true}, true, ""},
		{"file full, spool full", Options{File: "/dev/full", Table: full(), Required: true}, true, "audit file: write /dev/full: no space left on device"},
		{"no file, spool full", Options{Table: full(), Required: true}, false, "no audit file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.devFull && !hasDevFull {
				t.Skip("no /dev/full here")
			}
			l := openTrail(t, tc.opts)
			l.Write(queryEvent("erin", 1))
			l.Write(queryEvent("erin", 2))
			if l.table != nil {
				waitFor(t, "tried", func() bool { s := l.Stats(); return s.Spooled+s.Dropped == 2 })
			}
			err := l.Ready()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Ready = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := OpenOptions(context.Background(), Options{Required: true}); err == nil {
		t.Error("a required trail without a sink opened")
	}
}

// No field of a Record can hold a secret: none is named like one, and the
// table's credentials are not in it.
func TestRecordHasNoSecretField(t *testing.T) {
	secret := regexp.MustCompile(`(?i)token|secret|password|passwd|credential|cookie|authorization|bearer|key|ticket|assertion|code_verifier`)
	rt := reflect.TypeOf(Record{})
	for i := range rt.NumField() {
		f := rt.Field(i)
		if secret.MatchString(f.Name) || secret.MatchString(f.Tag.Get("json")) {
			t.Errorf("Record.%s (%s) looks like a secret", f.Name, f.Tag.Get("json"))
		}
	}
	for _, c := range columnNames() {
		if secret.MatchString(c) {
			t.Errorf("column %s looks like a secret", c)
		}
	}
}

// The DDL for each kind of server, as the README shows it.
func TestSchema(t *testing.T) {
	for _, tc := range []struct {
		version string
		ttl     time.Duration
		has     []string
		hasNot  []string
		err     string
	}{
		{version: "18.16.1", has: []string{"event_time_microseconds UInt64,", "type String,", "roles Array(String),", "ENGINE = ReplacingMergeTree\nPARTITION BY event_date\nORDER BY (user, event_time, event_id)\n"},
			hasNot: []string{"LowCardinality", "DateTime64", "TTL", "SETTINGS"}},
		{version: "18.16.1", ttl: time.Hour, err: "no TTL (it came in 19.6)"},
		{version: "19.6.2", ttl: 36 * time.Hour, has: []string{"TTL event_time + INTERVAL 129600 SECOND", "event_time_microseconds UInt64"}},
		{version: "20.1.1", has: []string{"event_time_microseconds DateTime64(6, 'UTC'),", "type LowCardinality(String),", "roles Array(LowCardinality(String)),"}, hasNot: []string{"SETTINGS"}},
		{version: "26.7.2.1", ttl: 180 * 24 * time.Hour, has: []string{"DateTime64(6, 'UTC')", "TTL event_time + INTERVAL 15552000 SECOND\nSETTINGS non_replicated_deduplication_window = 1000\n"}},
		{version: "x", err: "not major.minor"},
	} {
		ddl, err := Schema(tc.version, "default", "clickgate_audit", tc.ttl)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s ttl %v: %v, want %q", tc.version, tc.ttl, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range tc.has {
			if !strings.Contains(ddl, s) {
				t.Errorf("%s: no %q in\n%s", tc.version, s, ddl)
			}
		}
		for _, s := range tc.hasNot {
			if strings.Contains(ddl, s) {
				t.Errorf("%s: %q in\n%s", tc.version, s, ddl)
			}
		}
	}
	if ddl, _ := Schema("26.7", "a`b", "c\nd", 0); !strings.HasPrefix(ddl, "CREATE TABLE IF NOT EXISTS `a\\`b`.`c\\nd`\n") {
		t.Errorf("hostile names: %s", ddl)
	}
}

// A caller may name the event before writing it (NewEventID); anything
// but such a UUID is replaced, for the table's UUID column.
func TestCallerEventID(t *testing.T) {
	mine := NewEventID()
	for _, tc := range []struct {
		in   Record
		keep bool
	}{
		{Record{Type: Query, EventID: mine}, true},
		{Record{Type: LoginSuccess, EventID: mine}, true},
		{Record{Type: Query, EventID: "not-a-uuid"}, false},
		{Record{Type: Query, EventID: strings.ToUpper(mine)}, false},
		{Record{Type: LoginFailure}, false},
	} {
		var buf strings.Builder
		New(&buf).Write(tc.in)
		rec := lines(t, []byte(buf.String()))[0]
		id, _ := rec["event_id"].(string)
		if !uuidV4.MatchString(id) || (id == mine) != tc.keep {
			t.Errorf("%+v: event_id %q", tc.in, id)
		}
	}
}

// A query text longer than MaxQueryBytes is clipped at a character
// boundary.
func TestQueryIsClipped(t *testing.T) {
	var buf strings.Builder
	l := New(&buf)
	l.maxQuery = 10
	l.Write(Record{Type: Query, Query: "SELECT 'ééééé'"})
	recs := lines(t, []byte(buf.String()))
	if got := recs[0]["query"]; got != "SELECT 'é" {
		t.Errorf("query %q", got)
	}
}

// Write with the file alone and with file and table (a live 18.16).
func BenchmarkWrite(b *testing.B) {
	for _, withTable := range []bool{false, true} {
		b.Run(fmt.Sprintf("table=%v", withTable), func(b *testing.B) {
			opts := Options{File: filepath.Join(b.TempDir(), "audit.log")}
			if withTable {
				srv := startBench(b)
				opts.Table = &TableOptions{URL: srv, SpoolDir: b.TempDir()}
			}
			l, err := OpenOptions(context.Background(), opts)
			if err != nil {
				b.Fatal(err)
			}
			r := queryEvent("bench", 1)
			b.ResetTimer()
			for b.Loop() {
				l.Write(r)
			}
			b.StopTimer()
			l.Close()
		})
	}
}

// gather returns the counters in reg as "name{label=value}=n", sorted.
func gather(t *testing.T, reg *prometheus.Registry) string {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.GetCounter() == nil {
				continue
			}
			name := mf.GetName()
			for _, lp := range m.GetLabel() {
				name += "{" + lp.GetName() + "=" + lp.GetValue() + "}"
			}
			out = append(out, fmt.Sprintf("%s=%v", name, m.GetCounter().GetValue()))
		}
	}
	return strings.Join(out, " ")
}
