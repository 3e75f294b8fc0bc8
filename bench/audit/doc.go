// Package audit holds the audit trail benchmark: what the audit trail
// costs the gateway on SELECT 1, as req/s ratios measured in one run —
// three clickgate servers in the test process (server.New + Serve), the
// same configuration except the audit section (off; a file; a file and a
// ClickHouse table), in front of one ClickHouse 18.16, driven in
// interleaved rounds. The code is in audit_bench_test.go; `make bench`
// runs it and prints a table. See bench/README.md ("Audit trail").
package audit
