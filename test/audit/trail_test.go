package audit

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// Three people send gateway queries and MCP tool calls at 16 connections;
// the audit ClickHouse goes off the network for part of the run and comes
// back. Every query and call must have exactly one event, in the table and
// in the file, with the right person, account, SQL and rows, per person in
// the order they ran; the upstream's query_log must name the person of
// each (user agent on every release, log_comment on 26.7) and carry the
// event's query id; nothing may be dropped, and no query may fail.
func TestTrailUnderLoadAndOutage(t *testing.T) {
	for _, tc := range []struct {
		release        chtest.Release
		queries, calls int
	}{
		{chtest.Debian1816, 10000, 500},
		{chtest.ChDB267, 2000, 100},
	} {
		t.Run(tc.release.String(), func(t *testing.T) { testTrail(t, tc.release, tc.queries, tc.calls) })
	}
}

// sent is one query as the test sent it.
type sent struct {
	person person
	rows   int
	viaMCP bool
	worker int
}

// markerRE finds a query's number in its text (TSV escapes the quotes).
var markerRE = regexp.MustCompile(`m-([0-9]+)`)

// querySQL is query k, answering rows rows (readonly allows no table
// functions such as numbers(), which MCP's run_query would refuse).
func querySQL(k, rows int) string {
	return fmt.Sprintf("SELECT number, 'm-%d' FROM system.numbers LIMIT %d", k, rows)
}

func testTrail(t *testing.T, release chtest.Release, queries, calls int) {
	ch := upstream(t, release)
	trailCH := chtest.Start(t, chtest.Options{}) // the audit table's ClickHouse
	rl := testkit.NewRelay(t, trailCH.HTTPAddr)
	iss := servertest.NewIssuer(t)
	dir := t.TempDir()
	cg := startClickgate(t, func(url string) string {
		return configYAML(url, iss.Processor(), ch, "http://"+rl.Addr, dir, "full")
	})

	const workers = 16
	total := queries + calls
	every := total / calls // one job in every is an MCP call
	var (
		next, done atomic.Int64
		failures   atomic.Int64
		mu         sync.Mutex
		expect     = map[int]sent{}
		order      = make([][]int, workers) // each worker's jobs, in the order it sent them
		firstError string
	)
	fail := func(format string, args ...any) {
		failures.Add(1)
		mu.Lock()
		if firstError == "" {
			firstError = fmt.Sprintf(format, args...)
		}
		mu.Unlock()
	}
	// The audit ClickHouse leaves the network at 30 % of the run and
	// comes back at 60 %.
	outage := make(chan struct{})
	go func() {
		defer close(outage)
		for done.Load() < int64(total*3/10) {
			time.Sleep(5 * time.Millisecond)
		}
		rl.Down()
		for done.Load() < int64(total*6/10) {
			time.Sleep(5 * time.Millisecond)
		}
		rl.Up(t)
	}()
	var wg sync.WaitGroup
	for w := range workers {
		p := people[w%len(people)]
		gwToken, mcpToken := tokens(t, iss, cg.url+"/mcp", p)
		cs := connectMCP(t, cg, mcpToken)
		wg.Go(func() {
			for {
				k := int(next.Add(1)) - 1
				if k >= total {
					return
				}
				s := sent{person: p, rows: k%5 + 1, viaMCP: k%every == 0, worker: w}
				mu.Lock()
				expect[k] = s
				order[w] = append(order[w], k)
				mu.Unlock()
				sql := querySQL(k, s.rows)
				if s.viaMCP {
					if n, err := runQuery(cs, sql); err != nil || n != s.rows {
						fail("MCP %d: %d rows, %v", k, n, err)
					}
				} else if status, body, err := query(cg, gwToken, sql); err != nil || status != 200 || strings.Count(body, "\n") != s.rows {
					fail("gateway %d: %d %q %v", k, status, body, err)
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	<-outage
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d queries failed while the audit ClickHouse was away; the first: %s", n, total, firstError)
	}
	spooled := cg.metric(t, "clickgate_audit_events_spooled_total")
	if spooled == "" || spooled == "0" {
		t.Errorf("no event was spooled: the outage was not felt (clickgate_audit_events_spooled_total %q)", spooled)
	}
	cg.stop() // a clean shutdown flushes the trail
	t.Logf("%s: %d gateway queries and %d MCP calls by %d people at %d connections; %s events spooled during the outage",
		release, queries, calls, len(people), workers, spooled)

	// The table: one event per query, right in every field.
	events := tableEvents(t, trailCH, "type IN ('Query', 'ToolCall')")
	byMarker := map[int]audit.Record{}
	for _, e := range events {
		m := markerRE.FindStringSubmatch(e.Query)
		if m == nil {
			t.Fatalf("an event without a marker: %+v", e)
		}
		k, _ := strconv.Atoi(m[1])
		if prev, dup := byMarker[k]; dup {
			t.Fatalf("query %d has two events: %+v and %+v", k, prev, e)
		}
		byMarker[k] = e
	}
	if len(byMarker) != total {
		t.Fatalf("the table has %d events for %d queries", len(byMarker), total)
	}
	raw := trailCH.Query(t, chtest.AdminUser, chtest.AdminPassword, "SELECT count() FROM default.clickgate_audit WHERE type IN ('Query', 'ToolCall')")
	disk := trailCH.Query(t, chtest.AdminUser, chtest.AdminPassword, "SELECT sum(data_compressed_bytes), sum(data_uncompressed_bytes), sum(rows) FROM system.parts WHERE active AND database = 'default' AND table = 'clickgate_audit'")
	t.Logf("table: %d events (%s rows before merging replayed duplicates); compressed, uncompressed bytes and rows on disk: %s", len(byMarker), raw, disk)
	for k, s := range expect {
		e := byMarker[k]
		wantType, wantRows := "Query", uint64(0)
		if s.viaMCP {
			wantType, wantRows = "ToolCall", uint64(s.rows) // counted by clickgate
		} else if release == chtest.ChDB267 {
			wantRows = uint64(s.rows) // X-ClickHouse-Summary; 18.16 sends none
		}
		if e.Type != wantType || e.User != s.person.email || e.Account != s.person.account || e.Outcome != "ok" || e.ResultRows != wantRows ||
			(s.viaMCP && e.Tool != "run_query") || e.Query != querySQL(k, s.rows) {
			t.Fatalf("query %d (%+v): event %+v", k, s, e)
		}
	}
	// Per person, in the order they ran: each worker is one person
	// sending one query after another.
	for w, ks := range order {
		times := make([]string, len(ks))
		for i, k := range ks {
			times[i] = byMarker[k].EventTimeMicroseconds
		}
		if !slices.IsSorted(times) {
			t.Errorf("worker %d (%s): event times out of order: %v", w, people[w%len(people)].email, times)
		}
	}

	// The file: the same events, once each.
	recs, err := audit.ReadFile(filepath.Join(dir, "audit.jsonl"), audit.Filter{Types: []string{audit.Query, audit.ToolCall}})
	if err != nil {
		t.Fatal(err)
	}
	inFile := map[string]int{}
	for _, r := range recs {
		inFile[r.EventID]++
	}
	for k, e := range byMarker {
		if inFile[e.EventID] != 1 {
			t.Fatalf("query %d: event %s is %d times in the file", k, e.EventID, inFile[e.EventID])
		}
	}
	if len(recs) != total {
		t.Fatalf("the file has %d events for %d queries", len(recs), total)
	}

	// The upstream's query_log names the person of each query and joins
	// the trail by query id.
	flushLogs(t, ch)
	cols, finish := "query, user, http_user_agent, query_id, ''", "type = 2"
	if release == chtest.ChDB267 {
		cols, finish = "query, user, http_user_agent, query_id, JSONExtractString(log_comment, 'event_id')", "type = 'QueryFinish'"
	}
	logged := ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "SELECT "+cols+" FROM system.query_log WHERE "+finish+
		" AND query LIKE '%''m-%' AND query NOT LIKE '%query_log%' FORMAT TSV")
	ids := map[int]string{}
	for _, e := range events {
		k, _ := strconv.Atoi(markerRE.FindStringSubmatch(e.Query)[1])
		ids[k] = e.EventID
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(logged), "\n") {
		f := strings.Split(line, "\t")
		k, _ := strconv.Atoi(markerRE.FindStringSubmatch(f[0])[1])
		s := expect[k]
		if f[1] != s.person.account || !strings.HasSuffix(f[2], " clickgate (user "+s.person.email+")") {
			t.Fatalf("query_log of query %d: user %s, agent %q; want %s for %s", k, f[1], f[2], s.person.account, s.person.email)
		}
		if release == chtest.ChDB267 && f[4] != ids[k] {
			t.Fatalf("query_log of query %d: log_comment's event_id %q, want %s", k, f[4], ids[k])
		}
		if e := byMarker[k]; f[3] != e.QueryID || (s.viaMCP && e.QueryID != e.EventID) {
			t.Fatalf("query_log of query %d: query_id %q; the event has %s (event id %s)", k, f[3], e.QueryID, e.EventID)
		}
		seen++
	}
	if seen != total {
		t.Fatalf("query_log has %d of the %d queries", seen, total)
	}
}
