package audit

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Sinks, as the label sink of the metrics.
const (
	sinkFile  = "file"
	sinkTable = "table"
)

// metrics are the trail's counters: atomics, which Stats reads and the
// clickgate_audit_* metrics export.
type metrics struct {
	written  map[string]*atomic.Uint64 // by sink
	spooled  atomic.Uint64
	replayed atomic.Uint64
	dropped  atomic.Uint64
	latency  *prometheus.HistogramVec

	mu         sync.Mutex
	reg        prometheus.Registerer
	collectors []prometheus.Collector
}

func newMetrics() *metrics {
	return &metrics{
		written: map[string]*atomic.Uint64{sinkFile: new(atomic.Uint64), sinkTable: new(atomic.Uint64)},
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "clickgate_audit_sink_latency_seconds",
			Help:    "Time to persist events: one line for the file, one batch INSERT for the table.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30},
		}, []string{"sink"}),
	}
}

func counter(name, help string, labels prometheus.Labels, v *atomic.Uint64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
		func() float64 { return float64(v.Load()) })
}

// register exports the metrics to reg; unregister (Close) takes them back,
// so that a trail reopened on reload can register again.
func (m *metrics) register(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{
		counter("clickgate_audit_events_written_total", "Audit events persisted, by sink.", prometheus.Labels{"sink": sinkFile}, m.written[sinkFile]),
		counter("clickgate_audit_events_written_total", "Audit events persisted, by sink.", prometheus.Labels{"sink": sinkTable}, m.written[sinkTable]),
		counter("clickgate_audit_events_spooled_total", "Audit events written to the spool because ClickHouse could not take them.", nil, &m.spooled),
		counter("clickgate_audit_events_replayed_total", "Spooled audit events inserted into ClickHouse later.", nil, &m.replayed),
		counter("clickgate_audit_events_dropped_total", "Audit events lost because the spool was full or unwritable; normally 0.", nil, &m.dropped),
		m.latency,
	}
	var done []prometheus.Collector
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return err
		}
		done = append(done, c)
	}
	m.mu.Lock()
	m.reg, m.collectors = reg, done
	m.mu.Unlock()
	return nil
}

func (m *metrics) unregister() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
	m.reg, m.collectors = nil, nil
}

var errClosed = errors.New("closed")
