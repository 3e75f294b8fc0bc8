// Package cluster holds the cluster benchmark: in one run, interleaved,
// ClickHouse 18.16 reached directly, through a bare
// net/http/httputil.ReverseProxy that only adds Basic credentials (the
// floor of any Go HTTP proxy), through clickgate with one node and no
// limits, and through clickgate with two nodes (clickhouse.urls) and
// per-person limits on. The code is in cluster_bench_test.go; `make bench`
// runs it and prints a table. See bench/README.md ("Cluster and limits").
package cluster
