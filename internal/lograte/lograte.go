// Package lograte keeps failure logs readable under load: a message that
// repeats (ClickHouse unreachable, once per failed request) is logged at
// once the first time, then at most once per interval with the number of
// occurrences it stands for. Nothing is dropped silently: every
// suppressed occurrence is counted in the next line of its key.
package lograte

import (
	"context"
	"log/slog"
	"regexp"
	"sync"
	"time"
)

// DefaultEvery is the interval of [Default].
const DefaultEvery = 10 * time.Second

// Default is the limiter of [Warn] and [Log].
var Default = &Limiter{Every: DefaultEvery}

// Warn logs msg with args on l at warning level through [Default].
func Warn(l *slog.Logger, msg string, args ...any) {
	Default.Log(l, slog.LevelWarn, msg, args...)
}

// Limiter rate-limits log lines per logger and message. The zero value
// uses DefaultEvery.
type Limiter struct {
	// Every is the shortest time between two lines of one key after the
	// first.
	Every time.Duration

	mu   sync.Mutex
	keys map[key]*state
}

type key struct {
	l   *slog.Logger
	msg string
}

// state is a key that logged within the last interval.
type state struct {
	level      slog.Level
	msg        string // of the first occurrence
	suppressed int    // occurrences since the last line
	args       []any  // of the last suppressed occurrence
	since      time.Time
}

// Suppressed is the attribute that counts the occurrences a line stands
// for besides its own (the last one's attributes are shown).
const Suppressed = "suppressed"

// Log logs msg with args on l at level: at once when msg was not logged
// on l in the last interval, else it counts the occurrence; at the end
// of the interval one line reports the count and the last occurrence's
// args. The message is the key: keep variable parts in args.
func (r *Limiter) Log(l *slog.Logger, level slog.Level, msg string, args ...any) {
	r.log(l, level, msg, msg, args)
}

// log is Log with a key other than the message.
func (r *Limiter) log(l *slog.Logger, level slog.Level, k, msg string, args []any) {
	if l == nil {
		l = slog.Default()
	}
	if !l.Enabled(context.Background(), level) {
		return
	}
	kk := key{l, k}
	r.mu.Lock()
	if st, ok := r.keys[kk]; ok {
		st.suppressed++
		st.args = args
		if level > st.level {
			st.level = level
		}
		r.mu.Unlock()
		return
	}
	if r.keys == nil {
		r.keys = map[key]*state{}
	}
	r.keys[kk] = &state{level: level, msg: msg, since: time.Now()}
	r.mu.Unlock()
	time.AfterFunc(r.every(), func() { r.flush(kk) })
	l.Log(context.Background(), level, msg, args...)
}

func (r *Limiter) every() time.Duration {
	if r.Every <= 0 {
		return DefaultEvery
	}
	return r.Every
}

// flush ends k's interval: a line with the count when occurrences were
// suppressed, and a new interval; else k is forgotten.
func (r *Limiter) flush(k key) {
	if r.report(k, true) {
		time.AfterFunc(r.every(), func() { r.flush(k) })
	}
}

// report logs k's suppressed occurrences, if any, and reports whether k
// is still known; forget drops a key without any.
func (r *Limiter) report(k key, forget bool) bool {
	r.mu.Lock()
	st, ok := r.keys[k]
	if !ok || st.suppressed == 0 {
		if ok && forget {
			delete(r.keys, k)
		}
		r.mu.Unlock()
		return ok && !forget
	}
	n, args, level, since := st.suppressed, st.args, st.level, st.since
	now := time.Now()
	st.suppressed, st.args, st.since = 0, nil, now
	r.mu.Unlock()
	args = append(args[:len(args):len(args)], Suppressed, n, "in", now.Sub(since).Round(time.Millisecond).String())
	k.l.Log(context.Background(), level, st.msg+" (repeated)", args...)
	return true
}

// Flush logs now the counts of every key with suppressed occurrences,
// for a clean shutdown.
func (r *Limiter) Flush() {
	r.mu.Lock()
	var ks []key
	for k, st := range r.keys {
		if st.suppressed > 0 {
			ks = append(ks, k)
		}
	}
	r.mu.Unlock()
	for _, k := range ks {
		r.report(k, false)
	}
}

// NewHandler wraps h so that records whose messages differ only in
// numbers (addresses, ports, durations) share one key of a Limiter with
// interval every: for loggers that get free-form text, such as
// http.Server's ErrorLog ("http: Accept error: …; retrying in 5ms").
func NewHandler(h slog.Handler, every time.Duration) slog.Handler {
	return &handler{h: h, r: &Limiter{Every: every}, l: slog.New(h)}
}

type handler struct {
	h slog.Handler
	r *Limiter
	l *slog.Logger
}

var digits = regexp.MustCompile(`[0-9]+`)

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, rec slog.Record) error {
	var args []any
	rec.Attrs(func(a slog.Attr) bool { args = append(args, a); return true })
	h.r.log(h.l, rec.Level, digits.ReplaceAllString(rec.Message, "#"), rec.Message, args)
	return nil
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{h: h.h.WithAttrs(as), r: h.r, l: slog.New(h.h.WithAttrs(as))}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{h: h.h.WithGroup(name), r: h.r, l: slog.New(h.h.WithGroup(name))}
}
