// Package gateway holds the gateway benchmark: clickgate (built from
// ./cmd/clickgate and run as its own process) in front of a real
// ClickHouse, against the same ClickHouse reached directly. The code is
// in gateway_bench_test.go; `make bench` runs it and prints a table.
// base_bench_test.go compares two clickgate builds the same way (make
// bench-base BASE=<commit>). See bench/README.md ("Gateway").
package gateway
