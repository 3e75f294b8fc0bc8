package token

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts cache lookups and times IdP calls. A nil *Metrics is
// valid and records nothing.
type Metrics struct {
	cacheLookups *prometheus.CounterVec
	idpRequests  *prometheus.HistogramVec
	idpBreaker   *prometheus.GaugeVec
}

// NewMetrics registers token metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		cacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickgate_token_cache_lookups_total",
			Help: "Token cache lookups by result: hit, negative_hit (a cached rejection) or miss.",
		}, []string{"result"}),
		idpRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "clickgate_idp_request_duration_seconds",
			Help:    "Calls to identity providers (discovery, jwks, userinfo, introspection, API) by processor, endpoint and outcome (1xx…5xx, error, timeout, or breaker_open: not made).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"processor", "endpoint", "outcome"}),
		idpBreaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clickgate_idp_breaker_open",
			Help: "1 while a processor's circuit breaker is open: its IdP failed repeatedly and calls to it fail fast.",
		}, []string{"processor"}),
	}
	reg.MustRegister(m.cacheLookups, m.idpRequests, m.idpBreaker)
	return m
}

func (m *Metrics) cacheLookup(result string) {
	if m != nil {
		m.cacheLookups.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) observeIdP(processor, endpoint, outcome string, d time.Duration) {
	if m != nil {
		m.idpRequests.WithLabelValues(processor, endpoint, outcome).Observe(d.Seconds())
	}
}

func (m *Metrics) breakerOpen(processor string, open bool) {
	if m != nil {
		v := 0.0
		if open {
			v = 1
		}
		m.idpBreaker.WithLabelValues(processor).Set(v)
	}
}
