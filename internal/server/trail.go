package server

import (
	"encoding/json"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/config"
)

// A reload builds a new server beside the running one. Both must not
// open the same audit trail twice: two table sinks would share one spool
// directory (each taking the other's clean-stop marker and half-written
// batches for its own). So a process keeps one trail while the trail's
// configuration stays the same, shared by the servers that use it, and
// closes it when the last of them closes.

// trail is an audit trail and the servers using it.
type trail struct {
	log   *audit.Log
	reg   *prometheus.Registry // its metrics, gathered by each server using it
	key   string               // the configuration it was opened with
	users int
}

// trails are a process's open audit trails, by configuration.
type trails struct {
	mu   sync.Mutex
	open map[string]*trail
}

// trailKey is what makes a trail: its file and table, not what the fronts
// record in it (query_text, login_success).
func trailKey(cfg *config.Config) string {
	a := cfg.Audit
	b, _ := json.Marshal([]any{a.File, a.MaxSize, a.MaxFiles, a.Required, AuditTable(cfg)})
	return string(b)
}

// acquire returns the trail cfg describes: an open one with the same
// configuration, else a new one.
func (ts *trails) acquire(cfg *config.Config, opt Options) (*trail, error) {
	key := trailKey(cfg)
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.open[key]; t != nil {
		t.users++
		return t, nil
	}
	reg := prometheus.NewRegistry()
	log, err := OpenAudit(cfg, opt, reg)
	if err != nil {
		return nil, err
	}
	t := &trail{log: log, reg: reg, key: key, users: 1}
	if ts.open == nil {
		ts.open = map[string]*trail{}
	}
	ts.open[key] = t
	return t, nil
}

// release is a server's end of using t: the last one closes it.
func (ts *trails) release(t *trail) error {
	ts.mu.Lock()
	t.users--
	last := t.users == 0
	if last {
		delete(ts.open, t.key)
	}
	ts.mu.Unlock()
	if !last {
		return nil
	}
	return t.log.Close()
}
