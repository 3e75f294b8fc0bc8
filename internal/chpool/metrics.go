package chpool

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	up, lagging, inFlight      *prometheus.GaugeVec
	requests, errors_, retries *prometheus.CounterVec
}

type nodeMetrics struct {
	up, lagging, inFlight     prometheus.Gauge
	requests, errors, retries prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clickgate_clickhouse_node_" + name, Help: help}, []string{"node"})
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clickgate_clickhouse_node_" + name, Help: help}, []string{"node"})
	}
	m := &metrics{
		up:       gauge("up", "1 when the ClickHouse node answers its health check and requests reach it."),
		lagging:  gauge("lagging", "1 when the ClickHouse node is up but its replicas lag more than clickhouse.health.max_replica_delay."),
		inFlight: gauge("in_flight", "Requests sent to the ClickHouse node whose response has not been read to its end."),
		requests: counter("requests_total", "Requests sent to the ClickHouse node (each attempt counts)."),
		errors_:  counter("errors_total", "Requests to the ClickHouse node that failed without an HTTP response."),
		retries:  counter("retries_total", "Requests that failed to reach the ClickHouse node before being written and were tried on another node."),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.up, err = register(reg, m.up)
	if err == nil {
		m.lagging, err = register(reg, m.lagging)
	}
	if err == nil {
		m.inFlight, err = register(reg, m.inFlight)
	}
	if err == nil {
		m.requests, err = register(reg, m.requests)
	}
	if err == nil {
		m.errors_, err = register(reg, m.errors_)
	}
	if err == nil {
		m.retries, err = register(reg, m.retries)
	}
	return m, err
}

// register registers c, or returns the collector already registered in
// its place.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if old, ok := are.ExistingCollector.(C); ok {
			return old, nil
		}
	}
	return c, err
}

func (m *metrics) node(host string) nodeMetrics {
	return nodeMetrics{
		up: m.up.WithLabelValues(host), lagging: m.lagging.WithLabelValues(host), inFlight: m.inFlight.WithLabelValues(host),
		requests: m.requests.WithLabelValues(host), errors: m.errors_.WithLabelValues(host), retries: m.retries.WithLabelValues(host),
	}
}
