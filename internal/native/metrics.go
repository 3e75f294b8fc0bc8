package native

import "github.com/prometheus/client_golang/prometheus"

// metrics count the native listener's connections and queries.
type metrics struct {
	open    prometheus.Gauge
	queries *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickgate_native_connections_open",
			Help: "Native-protocol client connections open (server.native_listen).",
		}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickgate_native_queries_total",
			Help: "Native-protocol queries by outcome: ok, failed (ClickHouse's exception or a cut connection), cancelled, refused (by clickgate).",
		}, []string{"outcome"}),
	}
	for _, o := range []string{"ok", "failed", "cancelled", "refused"} {
		m.queries.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.open, m.queries)
	}
	return m
}
