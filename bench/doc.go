// Package bench holds no code: it is where the benchmark figures live
// (README.md), so that `make bench` (go test ./internal/token/ ./bench/...)
// has a package to name. The benchmarks themselves are in
// internal/token/bench_test.go.
package bench
