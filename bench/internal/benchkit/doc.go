// Package benchkit is for the benchmarks under bench/ only (not for tests,
// not for clickgate itself): what BenchmarkGateway (bench/gateway) and
// BenchmarkMCP (bench/mcp) both need to run clickgate as its own process in
// front of a real ClickHouse and to measure it — starting `clickgate serve`
// (or the test binary as a profiled server), its configuration, VmRSS/VmHWM
// and CPU time from /proc, percentiles, environment knobs.
//
// Each benchmark's own logic (what it sends, how it pairs the sides, what
// it prints) stays in its _test.go files.
package benchkit
