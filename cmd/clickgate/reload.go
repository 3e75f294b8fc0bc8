package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
)

// reloader applies a configuration file to a running server: it loads
// and validates the file, keeps the running values of the keys that need
// a restart (config.RestartKeys), builds a complete new server and swaps
// it in (server.Live.Swap). A file that does not load, or whose server
// cannot be built, changes nothing: the reason goes to the log at ERROR
// and clickgate_config_reloads_total counts it.
type reloader struct {
	path string
	log  *slog.Logger
	opts server.Options
	proc *server.Process
	live *server.Live // set before the first reload

	mu      sync.Mutex // one reload at a time
	running *config.Config
	// ticketSecret signs http_auth tickets when clickhouse.ticket_secret
	// is not set: one random key for the process, so that tickets given
	// out before a reload are still accepted after it.
	ticketSecret string
}

func newReloader(path string, cfg *config.Config, logger *slog.Logger, opts server.Options, proc *server.Process) *reloader {
	var b [32]byte
	_, _ = rand.Read(b[:])
	r := &reloader{path: path, log: logger, opts: opts, proc: proc, running: cfg, ticketSecret: hex.EncodeToString(b[:])}
	r.processValues(cfg)
	return r
}

// processValues sets in cfg what must not change within the process
// although the file leaves it unset.
func (r *reloader) processValues(cfg *config.Config) {
	if ch := cfg.ClickHouse; ch != nil && ch.TicketSecret == "" {
		ch.TicketSecret = r.ticketSecret
	}
}

// reload applies the file; trigger says why, for the log. It returns the
// result (server.ReloadOK, ReloadInvalid, ReloadFailed).
func (r *reloader) reload(trigger string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := time.Now()
	result := r.apply(trigger)
	r.proc.Reloaded(result)
	if result == server.ReloadOK {
		r.log.Info("configuration reloaded: new requests use it, requests in flight finish under the previous one",
			"trigger", trigger, "file", r.path, "took", time.Since(start).Round(time.Millisecond))
	}
	return result
}

func (r *reloader) apply(trigger string) string {
	next, err := config.Load(r.path)
	if err != nil {
		r.log.Error("configuration reload: the file is not valid; the running configuration stays",
			"trigger", trigger, "file", r.path, "error", err)
		return server.ReloadInvalid
	}
	for _, w := range next.Warnings {
		r.log.Warn("configuration", "warning", w)
	}
	r.processValues(next)
	for _, key := range config.KeepRestartKeys(r.running, next) {
		r.log.Warn(key+" changed: restart clickgate to apply", "trigger", trigger, "key", key, "running", restartValue(r.running, key))
	}
	srv, err := server.New(next, r.opts)
	if err != nil {
		r.log.Error("configuration reload: the configuration is valid, but its server could not be built; the running configuration stays",
			"trigger", trigger, "file", r.path, "error", err)
		return server.ReloadFailed
	}
	if err := r.live.Swap(srv); err != nil {
		srv.Close(context.Background())
		r.log.Error("configuration reload: not applied; the running configuration stays", "trigger", trigger, "error", err)
		return server.ReloadFailed
	}
	r.running = next
	return server.ReloadOK
}

// restartValue is the running value of a restart key, for the log.
func restartValue(cfg *config.Config, key string) any {
	s := cfg.Server
	switch key {
	case "server.listen":
		return s.Listen
	case "server.metrics_listen":
		return s.MetricsListen
	case "server.tls":
		return s.TLS.CertFile != ""
	case "server.max_connections":
		return s.MaxConnections
	}
	return nil
}

// onHangup handles SIGHUP until ctx ends or stop is called: the audit
// file is reopened first (logrotate moves it away, then signals), then,
// with a configuration file, the configuration is reloaded (whose new
// server opens the audit file anew, too).
func (r *reloader) onHangup(ctx context.Context) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		for {
			select {
			case <-hup:
				if err := r.live.Current().ReopenAudit(); err != nil {
					r.log.Error("SIGHUP: reopening the audit file", "error", err)
				} else if r.path == "" {
					r.log.Info("SIGHUP: audit file reopened")
				}
				if r.path != "" {
					r.reload("SIGHUP")
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { signal.Stop(hup); cancel() }
}

// fileState is what --watch compares: a change of any part is a change
// of the file (an in-place write changes size or time; a rename over it
// changes the file itself).
type fileState struct {
	info os.FileInfo
	err  error
}

func statFile(path string) fileState {
	fi, err := os.Stat(path) // follows symbolic links: a swapped link target is a change
	return fileState{fi, err}
}

func (a fileState) same(b fileState) bool {
	if a.err != nil || b.err != nil {
		return (a.err != nil) == (b.err != nil)
	}
	return os.SameFile(a.info, b.info) && a.info.Size() == b.info.Size() &&
		a.info.ModTime().Equal(b.info.ModTime()) && a.info.Mode() == b.info.Mode()
}

// watchSettle is how long a changed file must stay the same before it is
// read: an editor writing in place may be between truncating and writing.
const watchSettle = 150 * time.Millisecond

// watchFile calls changed when the file at path changes, looking every
// interval, until ctx ends. A file that is missing for a moment (removed,
// then written again) is waited for.
func watchFile(ctx context.Context, path string, every time.Duration, changed func(), logger *slog.Logger) {
	last := statFile(path)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := statFile(path)
		if now.same(last) {
			continue
		}
		// Let the writer finish: the file must stay the same for
		// watchSettle (at most a few seconds of waiting).
		for range 20 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(watchSettle):
			}
			again := statFile(path)
			if again.same(now) {
				break
			}
			now = again
		}
		last = now
		if now.err != nil {
			if !errors.Is(now.err, fs.ErrNotExist) {
				logger.Warn("--watch: cannot read the configuration file's state", "file", path, "error", now.err)
			}
			continue // wait for it to come back
		}
		changed()
	}
}
