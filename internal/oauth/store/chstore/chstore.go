// Package chstore is a broker store (store.Store) in a ClickHouse table,
// for broker replicas on several hosts.
package chstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clickgate/clickgate/internal/chsql"
	"github.com/clickgate/clickgate/internal/oauth/store"
)

// Exec runs one SQL statement on ClickHouse and returns the answer (rows in
// TabSeparated for a SELECT). *chhttp.Client, the service account's
// client, is one.
type Exec interface {
	Exec(ctx context.Context, sql string) (string, error)
}

// Contest timing: how long a call waits for the views of the claimants it
// saw (a claimant that died before publishing its view makes the others
// lose after this long), and how often it looks.
const (
	viewWait  = 3 * time.Second
	pollFirst = 5 * time.Millisecond
	pollMax   = 100 * time.Millisecond
)

// purgeMargin keeps rows this long past their expiry, so that a replica
// whose clock runs ahead does not delete rows that another still reads.
const purgeMargin = time.Hour

// revokeMargin keeps a revocation this much longer than the family's rows
// known when it was written: a StartFamily that does not see it (the
// winner of a replayed code) may write a start row expiring a little
// later.
const revokeMargin = 24 * time.Hour

// Store is a store.Store in a ClickHouse table, for broker replicas on
// several hosts. It runs on every ClickHouse from 18.16 on. 18.16 has
// neither a compare-and-set (KeeperMap came in 22.x) nor row deletion
// without a mutation, so the table is an append-only log and every call
// decides from what it reads, without a lock.
//
// Use(id) and Rotate(family, gen) are contests among the calls claiming
// the same value. A call appends a claim with a fresh random 64-bit writer
// id, reads the claims on that value, appends its view (the ids it saw),
// and wins if its id is the smallest it saw and every other claimant it
// saw either saw it too or saw an id smaller than its own. The log is not
// ordered by time: a row stamped earlier but arriving later would overturn
// a decision already made, and the clocks of the replicas need not agree.
//
// Guarantee: at most one call wins a contest, given that a row is visible
// to every SELECT started after its INSERT returned. (Of two winners A and
// B, at least one saw the other, as each inserted before it read; if both
// saw each other, both ids would be smaller than the other; if B did not
// see A, A saw B, and A wins only if B saw A or did not win.) One call
// always wins unless a claimant stops between its claim and its view: the
// calls that saw it then lose after viewWait. A lost Use is ErrReplay; so
// is a lost Rotate, where filestore, serializing, answers the third and
// later presentations of a generation with ErrRevoked.
//
// The premise holds on a single server (MergeTree). For a Replicated
// table, the account's profile needs insert_quorum ≥ 2 (or 'auto'),
// insert_quorum_parallel = 0 and select_sequential_consistency = 1; for
// SharedMergeTree, select_sequential_consistency = 1. New refuses
// a table without them. A quorum INSERT on a busy table may fail
// instead of waiting (before 21.x, only one quorum INSERT at a time): the
// call then returns that error, which refuses the request, which is safe.
// A call that does not see its own claim reports the missing consistency.
//
// Family state does not depend on who won: a family is revoked once it
// has a revoke row, two claims on one generation, or a claim on a
// generation that was never handed out, and such rows live as long as the
// family's rows (revoke rows a day longer). Its generation is the number
// of generations claimed.
//
// Rows carry their expiry and reads ignore expired rows, by the clock now
// given to New; clock skew between replicas shifts expiry,
// as it does for sealed values. 18.16 has no table TTL (19.6 added it), so
// the table grows by about five rows per sign-in (state and code: claim and
// view each; the family's start) and two per refresh. Purge deletes expired
// rows with ALTER TABLE … DELETE; call it daily. On ClickHouse 19.6 and
// later, ALTER TABLE … MODIFY TTL exp + INTERVAL 1 HOUR does the same.
type Store struct {
	db    Exec
	table string // quoted
	now   func() time.Time
}

// Row kinds.
const (
	kindClaim  = "claim"
	kindView   = "view"
	kindStart  = "start"
	kindRevoke = "revoke"
)

// New returns a store in table ("name" or "database.name")
// reached through db, creating the table if it is missing. The account
// needs SELECT and INSERT on it, CREATE TABLE to create it, and ALTER
// DELETE for Purge.
func New(ctx context.Context, db Exec, table string, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	database, name, qualified := strings.Cut(table, ".")
	if !qualified {
		name = table
	}
	qname, err := chsql.QuoteIdentifier(name)
	if err != nil {
		return nil, fmt.Errorf("oauth: store table: %w", err)
	}
	lname, _ := chsql.QuoteString(name) // valid: QuoteIdentifier accepted it
	where := "database = currentDatabase()"
	if qualified {
		qdb, err := chsql.QuoteIdentifier(database)
		if err != nil {
			return nil, fmt.Errorf("oauth: store database: %w", err)
		}
		ldb, _ := chsql.QuoteString(database)
		qname, where = qdb+"."+qname, "database = "+ldb
	}
	s := &Store{db: db, table: qname, now: now}

	// Looking first spares the account CREATE TABLE when an administrator
	// made the table.
	lookup := "SELECT engine FROM system.tables WHERE " + where + " AND name = " + lname + " FORMAT TabSeparated"
	engine, err := db.Exec(ctx, lookup)
	if err != nil {
		return nil, fmt.Errorf("oauth: store table: %w", err)
	}
	if strings.TrimSpace(engine) == "" {
		// Every read selects one key.
		create := "CREATE TABLE IF NOT EXISTS " + qname + " (" +
			"key String, " +
			"kind Enum8('claim' = 1, 'view' = 2, 'start' = 3, 'revoke' = 4), " +
			"gen UInt32, " +
			"writer UInt64, " +
			"seen Array(UInt64), " +
			"exp DateTime" +
			") ENGINE = MergeTree ORDER BY (key, gen)"
		if _, err := db.Exec(ctx, create); err != nil {
			return nil, fmt.Errorf("oauth: creating store table: %w", err)
		}
		if engine, err = db.Exec(ctx, lookup); err != nil {
			return nil, fmt.Errorf("oauth: store table: %w", err)
		}
	}
	if err := s.checkEngine(ctx, strings.TrimSpace(engine)); err != nil {
		return nil, err
	}
	return s, nil
}

// checkEngine refuses a table on which the contests would not be safe:
// engines that merge rows away (ReplacingMergeTree and the like), and
// replicated tables read without sequential consistency.
func (s *Store) checkEngine(ctx context.Context, engine string) error {
	switch engine {
	case "MergeTree":
		return nil
	case "ReplicatedMergeTree", "SharedMergeTree":
	default:
		return fmt.Errorf("oauth: store table %s is a %s; it must be a MergeTree, ReplicatedMergeTree or SharedMergeTree", s.table, engine)
	}
	out, err := s.db.Exec(ctx, "SELECT name, value FROM system.settings WHERE name IN ('insert_quorum', 'insert_quorum_parallel', 'select_sequential_consistency') FORMAT TabSeparated")
	if err != nil {
		return fmt.Errorf("oauth: store settings: %w", err)
	}
	set := map[string]string{}
	for line := range strings.Lines(out) {
		name, value, _ := strings.Cut(strings.TrimRight(line, "\n"), "\t")
		set[name] = value
	}
	ok := set["select_sequential_consistency"] == "1"
	if engine == "ReplicatedMergeTree" {
		// Servers before 21.x lack insert_quorum_parallel: their quorum
		// INSERTs were sequential.
		q := set["insert_quorum"]
		ok = ok && q != "" && q != "0" && q != "1" && set["insert_quorum_parallel"] != "1"
	}
	if !ok {
		return fmt.Errorf("oauth: store table %s is a %s read with insert_quorum = %q, insert_quorum_parallel = %q, select_sequential_consistency = %q; "+
			"the account's profile needs select_sequential_consistency = 1 and, for ReplicatedMergeTree, insert_quorum ≥ 2 and insert_quorum_parallel = 0",
			s.table, engine, set["insert_quorum"], set["insert_quorum_parallel"], set["select_sequential_consistency"])
	}
	return nil
}

// row is one row of the table, as read.
type row struct {
	kind   string
	gen    int
	writer uint64
	seen   []uint64
}

// insert appends a row; exp is an SQL expression for its expiry.
func (s *Store) insert(ctx context.Context, key, kind string, gen int, writer uint64, seen []uint64, exp string) error {
	qkey, err := chsql.QuoteString(key)
	if err != nil {
		return fmt.Errorf("oauth: store key: %w", err)
	}
	ids := "emptyArrayUInt64()"
	if len(seen) > 0 {
		var b strings.Builder
		for i, id := range seen {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.FormatUint(id, 10))
		}
		ids = "[" + b.String() + "]"
	}
	// INSERT … SELECT rather than VALUES: the expiry may be computed from
	// the table's other rows.
	sql := fmt.Sprintf("INSERT INTO %s (key, kind, gen, writer, seen, exp) SELECT %s, '%s', %d, %d, %s, %s",
		s.table, qkey, kind, gen, writer, ids, exp)
	if _, err := s.db.Exec(ctx, sql); err != nil {
		return fmt.Errorf("oauth: store: %w", err)
	}
	return nil
}

// read returns the live rows of key, with the views of generation gen
// only.
func (s *Store) read(ctx context.Context, key string, gen int) ([]row, error) {
	qkey, err := chsql.QuoteString(key)
	if err != nil {
		return nil, fmt.Errorf("oauth: store key: %w", err)
	}
	out, err := s.db.Exec(ctx, fmt.Sprintf(
		"SELECT kind, gen, writer, seen FROM %s WHERE key = %s AND exp > toDateTime(%d) AND (kind != 'view' OR gen = %d) FORMAT TabSeparated",
		s.table, qkey, unixSeconds(s.now()), gen))
	if err != nil {
		return nil, fmt.Errorf("oauth: store: %w", err)
	}
	var rows []row
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimRight(line, "\n"), "\t")
		if len(f) != 4 {
			return nil, fmt.Errorf("oauth: store: unexpected answer %q", line)
		}
		r := row{kind: f[0]}
		g, err1 := strconv.Atoi(f[1])
		w, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || len(f[3]) < 2 {
			return nil, fmt.Errorf("oauth: store: unexpected answer %q", line)
		}
		r.gen, r.writer = g, w
		if ids := f[3][1 : len(f[3])-1]; ids != "" {
			for id := range strings.SplitSeq(ids, ",") {
				n, err := strconv.ParseUint(id, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("oauth: store: unexpected answer %q", line)
				}
				r.seen = append(r.seen, n)
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// unixSeconds is t for a DateTime, which holds 0 to 2³²-1.
func unixSeconds(t time.Time) int64 {
	return min(max(t.Unix(), 0), math.MaxUint32)
}

// newWriter returns a fresh writer id.
func newWriter() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// claimants returns the ids of the claims on generation gen in rows,
// sorted.
func claimants(rows []row, gen int) []uint64 {
	var ids []uint64
	for _, r := range rows {
		if r.kind == kindClaim && r.gen == gen {
			ids = append(ids, r.writer)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// enter appends a claim on (key, gen) by a new writer, expiring at the
// SQL expression exp, and reads the rows of key.
func (s *Store) enter(ctx context.Context, key string, gen int, exp string) (uint64, []row, error) {
	w := newWriter()
	if err := s.insert(ctx, key, kindClaim, gen, w, nil, exp); err != nil {
		return 0, nil, err
	}
	rows, err := s.read(ctx, key, gen)
	return w, rows, err
}

// publish appends the view of writer w, which entered the contest on
// (key, gen) and read rows, and returns it: the claimants w saw.
func (s *Store) publish(ctx context.Context, key string, gen int, w uint64, exp string, rows []row) ([]uint64, error) {
	seen := claimants(rows, gen)
	if !slices.Contains(seen, w) {
		return nil, fmt.Errorf("oauth: store table %s did not show a row just written: reads are not sequentially consistent", s.table)
	}
	return seen, s.insert(ctx, key, kindView, gen, w, seen, exp)
}

// await reports whether writer w, which saw the claimants seen on (key,
// gen) in rows and published that view, wins the contest. It reads again
// until the views of the others it saw are there, or viewWait passed.
func (s *Store) await(ctx context.Context, key string, gen int, w uint64, seen []uint64, rows []row) (bool, error) {
	deadline := time.Now().Add(viewWait)
	for delay := pollFirst; ; delay = min(2*delay, pollMax) {
		views := map[uint64][]uint64{}
		for _, r := range rows {
			if r.kind == kindView && r.gen == gen {
				views[r.writer] = r.seen
			}
		}
		won, waiting := verdict(w, seen, views)
		if !waiting {
			return won, nil
		}
		if time.Now().Add(delay).After(deadline) {
			return false, nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
		var err error
		if rows, err = s.read(ctx, key, gen); err != nil {
			return false, err
		}
	}
}

// verdict decides the contest for writer w, which saw the claimants seen
// (sorted), given the views published so far. It is waiting while a view
// that could make w lose is missing.
func verdict(w uint64, seen []uint64, views map[uint64][]uint64) (won, waiting bool) {
	if seen[0] != w {
		return false, false
	}
	for _, x := range seen[1:] {
		v, ok := views[x]
		switch {
		case !ok:
			waiting = true
		case threatens(x, w, v):
			return false, false
		}
	}
	return !waiting, waiting
}

// threatens reports whether claimant x, whose view was v, may have won
// without seeing w: it saw neither w nor an id smaller than its own.
func threatens(x, w uint64, v []uint64) bool {
	for _, id := range v {
		if id == w || id < x {
			return false
		}
	}
	return true
}

// familyKey is the key of the rows of a refresh-token family, apart from
// the keys of Use.
func familyKey(family string) string { return "family:" + family }

// familyExp is an SQL expression for the expiry of family's rows.
func (s *Store) familyExp(family string) (string, error) {
	qkey, err := chsql.QuoteString(familyKey(family))
	if err != nil {
		return "", fmt.Errorf("oauth: store key: %w", err)
	}
	return fmt.Sprintf("(SELECT max(exp) FROM %s WHERE key = %s)", s.table, qkey), nil
}

// familyState is what the rows of a family say, leaving out the contest
// on generation gen, which the caller is deciding.
type familyState struct {
	started bool
	revoked bool
	claims  map[int]int // claims per generation
}

func stateOf(rows []row, gen int) familyState {
	f := familyState{claims: map[int]int{}}
	for _, r := range rows {
		switch r.kind {
		case kindStart:
			f.started = true
		case kindRevoke:
			f.revoked = true
		case kindClaim:
			f.claims[r.gen]++
		}
	}
	for h, n := range f.claims {
		if h != gen && (n > 1 || h > 0 && f.claims[h-1] == 0) {
			f.revoked = true
		}
	}
	return f
}

// Use implements store.Store.
func (s *Store) Use(ctx context.Context, id string, exp time.Time) error {
	if unixSeconds(exp) <= unixSeconds(s.now()) {
		return nil // nothing to remember, as in the file store
	}
	key, when := "use:"+id, fmt.Sprintf("toDateTime(%d)", unixSeconds(exp))
	w, rows, err := s.enter(ctx, key, 0, when)
	if err != nil {
		return err
	}
	seen, err := s.publish(ctx, key, 0, w, when, rows)
	if err != nil {
		return err
	}
	won, err := s.await(ctx, key, 0, w, seen, rows)
	switch {
	case err != nil:
		return err
	case !won:
		return store.ErrReplay
	}
	return nil
}

// StartFamily implements store.Store.
func (s *Store) StartFamily(ctx context.Context, family string, exp time.Time) error {
	key := familyKey(family)
	if err := s.insert(ctx, key, kindStart, 0, 0, nil, fmt.Sprintf("toDateTime(%d)", unixSeconds(exp))); err != nil {
		return err
	}
	rows, err := s.read(ctx, key, 0)
	if err != nil {
		return err
	}
	if !stateOf(rows, -1).revoked {
		return nil
	}
	// The start row just written may outlive the revocation: renew it.
	if err := s.Revoke(ctx, family, exp); err != nil {
		return err
	}
	return store.ErrRevoked
}

// Rotate implements store.Store.
func (s *Store) Rotate(ctx context.Context, family string, gen int) error {
	if gen < 0 || int64(gen) > math.MaxUint32 {
		return fmt.Errorf("oauth: generation %d out of range", gen)
	}
	key := familyKey(family)
	exp, err := s.familyExp(family)
	if err != nil {
		return err
	}
	w, rows, err := s.enter(ctx, key, gen, exp)
	if err != nil {
		return err
	}
	f := stateOf(rows, gen)
	if !f.started {
		// Unknown or expired: the claim expired with the family's rows.
		return store.ErrRevoked
	}
	// The view is published even when this call fails, so that the other
	// claimants need not wait for it.
	seen, err := s.publish(ctx, key, gen, w, exp, rows)
	switch {
	case err != nil:
		return err
	case f.revoked:
		return store.ErrRevoked
	case gen > 0 && f.claims[gen-1] == 0:
		return store.ErrReplay
	}
	won, err := s.await(ctx, key, gen, w, seen, rows)
	switch {
	case err != nil:
		return err
	case !won:
		return store.ErrReplay
	}
	return nil
}

// Revoke implements store.Store.
func (s *Store) Revoke(ctx context.Context, family string, exp time.Time) error {
	famExp, err := s.familyExp(family)
	if err != nil {
		return err
	}
	// The revocation outlasts the family's rows, or lasts until exp if it
	// has none.
	return s.insert(ctx, familyKey(family), kindRevoke, 0, 0, nil,
		fmt.Sprintf("greatest(toDateTime(%d), %s + %d)", unixSeconds(exp), famExp, int64(revokeMargin/time.Second)))
}

// Purge deletes the rows that expired over an hour ago. It starts a
// mutation, which ClickHouse runs in the background, rewriting the parts
// that hold such rows.
func (s *Store) Purge(ctx context.Context) error {
	_, err := s.db.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DELETE WHERE exp < toDateTime(%d)",
		s.table, unixSeconds(s.now().Add(-purgeMargin))))
	if err != nil {
		return fmt.Errorf("oauth: store purge: %w", err)
	}
	return nil
}
