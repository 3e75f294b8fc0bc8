package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clickgate/clickgate/internal/chhttp"
	"github.com/clickgate/clickgate/internal/chsql"
)

// Filter selects events for `clickgate audit`. Zero fields select all.
// (Not "Query": that is the event type constant.)
type Filter struct {
	User  string    // exactly this ClickHouse user name
	Since time.Time // events at or after Since
	Types []string  // any of these event types
	Limit int       // the newest Limit events (still returned oldest first)
}

func (q Filter) match(r Record) bool {
	if q.User != "" && r.User != q.User {
		return false
	}
	if !q.Since.IsZero() && r.Time().Before(q.Since) {
		return false
	}
	return len(q.Types) == 0 || slices.Contains(q.Types, r.Type)
}

// ReadFile returns the events of a JSON-lines trail that match q, oldest
// first: the rotated files (path.N … path.1) and then path. A line that is
// not an event (a write cut by a crash) is skipped.
func ReadFile(path string, q Filter) ([]Record, error) {
	var paths []string
	for i := 1; ; i++ {
		p := fmt.Sprintf("%s.%d", path, i)
		if _, err := os.Stat(p); err != nil {
			break
		}
		paths = append([]string{p}, paths...)
	}
	paths = append(paths, path)
	var out []Record
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		br := bufio.NewReader(f)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				var r Record
				if json.Unmarshal(line, &r) == nil && q.match(r) {
					out = append(out, r)
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("audit: %w", err)
			}
		}
		f.Close()
	}
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[len(out)-q.Limit:]
	}
	return out, nil
}

// TableReader reads events back from the audit table.
type TableReader struct {
	client *chhttp.Client
	name   string
}

// NewTableReader reads the table that o names (its URL, credentials,
// Database and Table; the rest is ignored).
func NewTableReader(o TableOptions) (*TableReader, error) {
	c, name, err := o.target()
	if err != nil {
		return nil, err
	}
	return &TableReader{client: c, name: name}, nil
}

// readColumns are the columns Read selects: every one but event_date and
// event_time (event_time_microseconds says more), the id as text.
func readColumns() string {
	cols := []string{"toString(event_id) AS event_id", "event_time_microseconds"}
	for _, c := range columns {
		cols = append(cols, c.name)
	}
	return strings.Join(cols, ", ")
}

// SQL returns the SELECT that Read sends: FINAL, so that the copies a
// replayed batch may have added are never shown.
func (tr *TableReader) SQL(q Filter) string {
	where := []string{"1"}
	if q.User != "" {
		where = append(where, "user = "+chsql.Literal(q.User))
	}
	if !q.Since.IsZero() {
		// Whole seconds here (the old layout has no DateTime64); Read
		// drops what is before Since within that second.
		where = append(where, fmt.Sprintf("event_time >= toDateTime(%d)", q.Since.Unix()))
	}
	if len(q.Types) > 0 {
		lits := make([]string, len(q.Types))
		for i, t := range q.Types {
			lits[i] = chsql.Literal(t)
		}
		where = append(where, "type IN ("+strings.Join(lits, ", ")+")")
	}
	order, limit := "ASC", ""
	if q.Limit > 0 {
		order, limit = "DESC", fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	return fmt.Sprintf("SELECT %s FROM %s FINAL WHERE %s ORDER BY event_time %s, event_time_microseconds %s, event_id %s%s FORMAT JSONEachRow",
		readColumns(), tr.name, strings.Join(where, " AND "), order, order, order, limit)
}

// Read returns the events that match q, oldest first.
func (tr *TableReader) Read(ctx context.Context, q Filter) ([]Record, error) {
	params := tr.client.URL.Query()
	params.Set("output_format_json_quote_64bit_integers", "0")
	body, _, err := tr.client.Open(ctx, tr.SQL(q), params, nil)
	if err != nil {
		return nil, fmt.Errorf("audit: reading %s: %w", tr.name, err)
	}
	defer body.Close()
	dec := json.NewDecoder(body)
	var out []Record
	for {
		var tr tableRecord
		if err := dec.Decode(&tr); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("audit: reading the table: %w", err)
		}
		r, err := tr.record()
		if err != nil {
			return nil, err
		}
		if q.match(r) {
			out = append(out, r)
		}
	}
	if q.Limit > 0 {
		slices.Reverse(out)
	}
	return out, nil
}

// tableRecord is a row as Read selects it: the Record's fields, with
// event_time_microseconds as the table has it (DateTime64 text, or UInt64
// microseconds on the old layout).
type tableRecord struct {
	Record
	EventTimeMicroseconds json.RawMessage `json:"event_time_microseconds"`
}

func (tr tableRecord) record() (Record, error) {
	r := tr.Record
	var at time.Time
	var s string
	if err := json.Unmarshal(tr.EventTimeMicroseconds, &s); err != nil {
		s = string(tr.EventTimeMicroseconds) // a number
	}
	if us, err := strconv.ParseInt(s, 10, 64); err == nil {
		at = time.UnixMicro(us)
	} else if at, err = time.ParseInLocation("2006-01-02 15:04:05.999999", s, time.UTC); err != nil {
		return Record{}, fmt.Errorf("audit: event_time_microseconds %q: %w", s, err)
	}
	r.EventTimeMicroseconds = at.UTC().Format(timeLayout)
	return r, nil
}

// FollowOverlap is how far back each poll of Follow looks before the
// newest event it has shown: batches are inserted up to FlushInterval
// late. Events replayed from a spool after a longer outage are older than
// that and are not shown by Follow (Read finds them).
const FollowOverlap = time.Minute

// Follow calls fn with the events that match q, oldest first, then polls
// every interval for new ones until ctx ends or fn fails. q.Limit applies
// to the first poll only.
func (tr *TableReader) Follow(ctx context.Context, q Filter, every time.Duration, fn func(Record) error) error {
	seen := map[string]time.Time{}
	var newest time.Time
	for first := true; ; first = false {
		qq := q
		if !first {
			qq.Limit = 0
			if since := newest.Add(-FollowOverlap); since.After(qq.Since) {
				qq.Since = since
			}
		}
		recs, err := tr.Read(ctx, qq)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if _, ok := seen[r.EventID]; ok {
				continue
			}
			if err := fn(r); err != nil {
				return err
			}
			at := r.Time()
			seen[r.EventID] = at
			if at.After(newest) {
				newest = at
			}
		}
		if first && q.Limit > 0 && !newest.IsZero() {
			// What the limit left out of the first poll is not new: mark
			// it seen.
			qq.Limit, qq.Since = 0, newest.Add(-FollowOverlap)
			older, err := tr.Read(ctx, qq)
			if err != nil {
				return err
			}
			for _, r := range older {
				if _, ok := seen[r.EventID]; !ok {
					seen[r.EventID] = r.Time()
				}
			}
		}
		for id, at := range seen {
			if at.Before(newest.Add(-2 * FollowOverlap)) {
				delete(seen, id)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
	}
}
