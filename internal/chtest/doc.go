// Package chtest runs a real ClickHouse server process (Debian's
// clickhouse-server 18.16) for Go tests. It is an ordinary package so that
// tests of several packages can share it, but only test code imports it.
//
// Start writes a private configuration (free loopback ports, a temporary data
// directory, users.xml accounts), starts /usr/sbin/clickhouse-server as its own
// process group (package chproc runs the process, as for the demo), waits
// until GET /ping answers and stops the server and removes its directory when
// the test ends. Starting takes about half a second, so each
// test package can start its own; stopping takes about a second. A missing
// binary fails the test (it never skips): scripts/install-clickhouse.sh
// installs it, and `make test` runs that. The server dies with the test binary
// even when cleanups do not run (Linux: parent-death signal). Set CHTEST_KEEP=1
// to keep the server directories (config, logs, data) after the tests.
//
// The default accounts are those of shared/testing/clickhouse-18.16/users.xml:
//
//	default    no password   profile default
//	ch_reader  reader-pw     profile readonly (readonly=1)
//	ch_admin   admin-pw      profile default
//
// plus a quota named "keyed" (unlimited, <keyed>1</keyed>) that accepts client
// supplied quota keys; Options.ExtraUsers adds accounts such as a service
// account, and Options.UsersXML replaces the file.
//
// # Who executed my query
//
// ClickHouse 18.16 has no currentUser() and no queryID(). A query finds itself
// in system.processes by a unique marker in its own text: CurrentUserSQL and
// SelfSQL build such queries, and Server.WhoAmI runs one. The same SQL works on
// current ClickHouse releases, so gateway tests can send it through clickgate.
//
// # What ClickHouse 18.16 supports over HTTP (verified by this package's tests)
//
//   - Credentials: Basic auth, the URL parameters user and password, and the
//     headers X-ClickHouse-User / X-ClickHouse-Key all work. X-ClickHouse-*
//     headers together with Basic auth or URL credentials are refused (Code:
//     194). Basic auth together with URL user/password is NOT refused: Basic
//     wins silently (current releases refuse the mix), so a gateway must strip
//     client-supplied user/password parameters and X-ClickHouse-User/Key
//     headers before it sets its own credentials. Wrong password: HTTP 401,
//     Code: 193; unknown user: 401, Code: 192.
//   - quota_key URL parameter (and X-ClickHouse-Quota header): accepted only
//     when the user's quota is keyed (<keyed>1</keyed>); otherwise Code: 200
//     "Quota … doesn't allow client supplied keys". The key is visible in
//     system.processes.quota_key and limits are counted per key.
//   - log_comment: not supported (Code: 115, Unknown setting log_comment).
//   - session_id / session_timeout: supported. Sessions belong to the user
//     (the same session_id of another user is another session); session_timeout
//     above max_session_timeout (3600 s) fails with Code: 374; session_check=1
//     on an unknown session fails with Code: 372.
//   - send_progress_in_http_headers: accepted as a setting, but Debian's build
//     sends no X-ClickHouse-Progress headers. There is no X-ClickHouse-Query-Id
//     or X-ClickHouse-Summary response header either; query_id as a URL
//     parameter works (visible in system.processes).
//   - readonly as a URL setting: readonly=1 and readonly=2 refuse writes
//     (Code: 164). A readonly=1 profile user may not change settings at all
//     (Code: 164 "Cannot override setting (x) in readonly mode"), not even
//     max_execution_time; setting readonly=1 again is allowed. readonly=1
//     also forbids table functions such as numbers() (Code: 164); the table
//     system.numbers works.
//   - max_execution_time: works (Code: 159 Timeout exceeded).
//   - KILL QUERY WHERE query_id='…' [SYNC]: works; a non-readonly user may kill
//     anyone's query, a readonly user only its own (Code: 164).
//   - enable_http_compression=1 with Accept-Encoding: gzip gives a gzip body;
//     Content-Encoding: gzip request bodies are accepted.
//   - X-ClickHouse-Database and X-ClickHouse-Format request headers are
//     ignored; the URL parameters database and default_format work.
//   - HTTP status of errors is 500 for most codes, 404 for unknown
//     functions/tables (46, 60) and 401 for authentication (192, 193).
package chtest
