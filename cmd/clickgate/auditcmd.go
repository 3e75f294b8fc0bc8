package main

import (
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
	"unicode/utf8"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
)

// eventTypes are the audit event types --type accepts.
var eventTypes = []string{
	audit.LoginSuccess, audit.LoginFailure, audit.Query, audit.QueryRefused, audit.ToolCall,
	audit.SignIn, audit.TokenIssued, audit.TokenRefreshed, audit.RefreshReplay, audit.ClientRegistered,
}

// followEvery is how often --follow looks for new events (a variable so
// that tests can wait less).
var followEvery = time.Second

// fileFollowOverlap is how far back each --follow poll of a file looks
// before the newest event shown: processes sharing a file append events
// slightly out of time order.
const fileFollowOverlap = 10 * time.Second

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit", "audit --config clickgate.yaml [--user U] [--since 1h|2026-12-06T10:00:00Z] [--type Query,ToolCall] [--limit 100] [--follow] [--format table|json]", stderr)
	path := fs.String("config", "clickgate.yaml", "configuration file (YAML): the trail is read from audit.clickhouse when set, else from audit.file (with its rotated files)")
	var q audit.Filter
	fs.StringVar(&q.User, "user", "", "only events of this ClickHouse user name (exactly)")
	fs.Func("since", "only events at or after `when`: a duration ago (1h, 30m, 72h) or an RFC 3339 time (2026-12-06T10:00:00Z)", func(s string) error {
		t, err := parseSince(s, time.Now())
		q.Since = t
		return err
	})
	fs.Func("type", "only events of these `types`, comma-separated: "+strings.Join(eventTypes, ", "), func(s string) error {
		types, err := parseTypes(s)
		q.Types = types
		return err
	})
	fs.IntVar(&q.Limit, "limit", 100, "show the newest `n` matching events (oldest first); 0 shows all. With --follow, for the first screen only")
	follow := fs.Bool("follow", false, "keep polling for new events until interrupted (Ctrl-C)")
	format := fs.String("format", "table", "output: table (aligned columns, one line per event) or json (JSON lines, the fields of the audit file)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if q.Limit < 0 {
		fmt.Fprintf(stderr, "--limit %d: must be 0 (all) or more\n", q.Limit)
		fs.Usage()
		return errUsage
	}
	var out printer
	switch *format {
	case "table":
		out = &tablePrinter{w: stdout}
	case "json":
		out = &jsonPrinter{w: stdout}
	default:
		fmt.Fprintf(stderr, "--format %q: use table or json\n", *format)
		fs.Usage()
		return errUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("%w\n(run 'clickgate check-config --config %s' for an explanation)", err, *path)
	}
	src, err := openTrail(cfg, *path)
	if err != nil {
		return err
	}
	if *follow {
		out.start()
		err := src.follow(ctx, q, out.print)
		if ctx.Err() != nil {
			return nil // interrupted: how --follow ends, whatever the read under way said
		}
		return err
	}
	recs, err := src.read(ctx, q)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		fmt.Fprintf(stderr, "no events match (in %s)\n", src.name)
		return nil
	}
	return out.all(recs)
}

// parseSince reads --since: a duration before now, or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("a duration ago must not be negative")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errors.New("neither a duration ago (1h, 30m, 72h) nor an RFC 3339 time (2026-12-06T10:00:00Z)")
	}
	return t, nil
}

// parseTypes reads --type: known event types, comma-separated.
func parseTypes(s string) ([]string, error) {
	var types []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !slices.Contains(eventTypes, t) {
			return nil, fmt.Errorf("unknown event type %q; the types are %s", t, strings.Join(eventTypes, ", "))
		}
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("no event type given; the types are %s", strings.Join(eventTypes, ", "))
	}
	return types, nil
}

// trail is where the events are read from: the table or the file.
type trail struct {
	name   string // for messages
	read   func(ctx context.Context, q audit.Filter) ([]audit.Record, error)
	follow func(ctx context.Context, q audit.Filter, fn func(audit.Record) error) error
}

// openTrail picks the trail cfg writes to: the ClickHouse table when
// audit.clickhouse is set (it has every replica's events), else the file.
func openTrail(cfg *config.Config, path string) (*trail, error) {
	a := cfg.Audit
	if t := a.ClickHouse; t != nil {
		tr, err := audit.NewTableReader(*server.AuditTable(cfg))
		if err != nil {
			return nil, err
		}
		return &trail{
			name: fmt.Sprintf("ClickHouse table %s.%s at %s", t.Database, t.Table, t.URL),
			read: tr.Read,
			follow: func(ctx context.Context, q audit.Filter, fn func(audit.Record) error) error {
				return tr.Follow(ctx, q, followEvery, fn)
			},
		}, nil
	}
	switch a.File {
	case "":
		return nil, fmt.Errorf("%s has no audit trail to read: set audit.file (a JSON-lines file) or audit.clickhouse (a ClickHouse table)", path)
	case "-":
		return nil, fmt.Errorf("%s sends the audit trail to standard error (audit.file: \"-\"), which cannot be read back: set audit.file to a path or audit.clickhouse", path)
	}
	file := a.File
	return &trail{
		name: file,
		read: func(_ context.Context, q audit.Filter) ([]audit.Record, error) { return audit.ReadFile(file, q) },
		follow: func(ctx context.Context, q audit.Filter, fn func(audit.Record) error) error {
			return followFile(ctx, file, q, fn)
		},
	}, nil
}

// followFile calls fn with the newest q.Limit events of the file that
// match q, then polls the file (and its rotated files) for new ones every
// followEvery until ctx ends, showing each event once (by event id). A
// file that is missing for now (not yet created, being rotated) is
// retried.
func followFile(ctx context.Context, path string, q audit.Filter, fn func(audit.Record) error) error {
	seen := map[string]time.Time{}
	var newest time.Time
	for first := true; ; first = false {
		qq := q
		qq.Limit = 0 // all of them, to know which are seen
		if since := newest.Add(-fileFollowOverlap); !first && since.After(qq.Since) {
			qq.Since = since
		}
		recs, err := audit.ReadFile(path, qq)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		show := len(recs)
		if first && q.Limit > 0 {
			show = min(show, q.Limit)
		}
		for i, r := range recs {
			if _, ok := seen[r.EventID]; ok {
				continue
			}
			at := r.Time()
			seen[r.EventID] = at
			if at.After(newest) {
				newest = at
			}
			if i < len(recs)-show {
				continue // left out by --limit
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		for id, at := range seen {
			if at.Before(newest.Add(-2 * fileFollowOverlap)) {
				delete(seen, id)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(followEvery):
		}
	}
}

// printer writes events: all at once, or (after start) one at a time.
type printer interface {
	all(recs []audit.Record) error
	start()
	print(r audit.Record) error
}

// jsonPrinter writes JSON lines with the audit file's field names.
type jsonPrinter struct{ w io.Writer }

func (p *jsonPrinter) all(recs []audit.Record) error {
	for _, r := range recs {
		if err := p.print(r); err != nil {
			return err
		}
	}
	return nil
}

func (p *jsonPrinter) start() {}

func (p *jsonPrinter) print(r audit.Record) error {
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = p.w.Write(append(line, '\n'))
	return err
}

// tablePrinter writes aligned columns, one line per event. Printing all
// at once, the columns fit every event; following, they start at
// typical widths and grow when an event needs more.
type tablePrinter struct {
	w      io.Writer
	widths []int
}

var tableHeader = []string{"TIME (UTC)", "TYPE", "USER", "ACCOUNT", "INTERFACE", "TOOL/KIND", "OUTCOME", "MS", "ROWS", "QUERY / FAILURE"}

// followWidths are the columns' first widths when following.
var followWidths = []int{24, 16, 24, 12, 13, 14, 7, 7, 11, 0}

// rightAligned are the numeric columns: MS and ROWS.
func rightAligned(col int) bool { return col == 7 || col == 8 }

// textWidth is where the last column's texts are clipped, in characters.
const textWidth = 80

func (p *tablePrinter) all(recs []audit.Record) error {
	rows := [][]string{tableHeader}
	for _, r := range recs {
		rows = append(rows, tableRow(r))
	}
	for _, row := range rows {
		p.fit(row)
	}
	for _, row := range rows {
		if err := p.line(row); err != nil {
			return err
		}
	}
	return nil
}

func (p *tablePrinter) start() {
	p.widths = slices.Clone(followWidths)
	p.fit(tableHeader)
	_ = p.line(tableHeader)
}

func (p *tablePrinter) print(r audit.Record) error {
	row := tableRow(r)
	p.fit(row)
	return p.line(row)
}

func (p *tablePrinter) fit(row []string) {
	if p.widths == nil {
		p.widths = make([]int, len(row))
	}
	for i, c := range row {
		p.widths[i] = max(p.widths[i], utf8.RuneCountInString(c))
	}
}

func (p *tablePrinter) line(row []string) error {
	var b strings.Builder
	for i, c := range row {
		if i == len(row)-1 {
			b.WriteString(c)
			break
		}
		pad := strings.Repeat(" ", p.widths[i]-utf8.RuneCountInString(c))
		if rightAligned(i) {
			b.WriteString(pad + c)
		} else {
			b.WriteString(c + pad)
		}
		b.WriteString("  ")
	}
	_, err := io.WriteString(p.w, strings.TrimRight(b.String(), " ")+"\n")
	return err
}

// tableRow is an event's cells under tableHeader.
func tableRow(r audit.Record) []string {
	at := r.EventTimeMicroseconds
	if t := r.Time(); !t.IsZero() {
		at = t.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	what := r.Tool
	if what == "" {
		what = r.QueryKind
	}
	if what == "" {
		what = r.ClientID // broker events: the OAuth client
	}
	outcome := r.Outcome
	if outcome == "" && r.FailureReason != "" {
		outcome = "failed"
	}
	ms := ""
	if r.DurationMicroseconds > 0 {
		ms = strconv.FormatFloat(float64(r.DurationMicroseconds)/1000, 'f', 1, 64)
	}
	rows := ""
	if r.ResultRows > 0 || r.ReadRows > 0 {
		rows = fmt.Sprintf("%d/%d", r.ResultRows, r.ReadRows)
	}
	var text []string
	if r.FailureReason != "" {
		text = append(text, oneLine(r.FailureReason, textWidth))
	}
	if r.Query != "" {
		text = append(text, oneLine(r.Query, textWidth))
	}
	return []string{at, r.Type, oneLine(r.User, 64), oneLine(r.Account, 64), r.Interface, oneLine(what, 40), outcome, ms, rows, strings.Join(text, " | ")}
}

// oneLine turns runs of white space (newlines, tabs) into one space and
// clips s to max characters, marking the cut with "…".
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max-1]) + "…"
}
