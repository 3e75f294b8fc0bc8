package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/login"
	"github.com/clickgate/clickgate/internal/testkit"
)

// cli runs the command line in-process, as main does, and returns the
// exit code and what went to stdout and stderr.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errw bytes.Buffer
	code = run(ctx, args, &out, &errw)
	return code, out.String(), errw.String()
}

// isolate gives the test an empty login cache and no clickgate settings
// from the environment.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(login.ConfigDirEnv, filepath.Join(dir, "config"))
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "xdg"))
	for _, env := range []string{serverEnv, clientSecretEnv, "CLICKGATE_TOKEN"} {
		t.Setenv(env, "")
	}
	return dir
}

func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// flagArgs are what comes before a command's flags: idp and broker take a
// subcommand first.
func flagArgs(name string) []string {
	switch name {
	case "idp", "broker":
		return []string{name, "rotate-key"}
	}
	return []string{name}
}

func TestTopLevelUsage(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, 0},
		{[]string{"-h"}, 0},
		{[]string{"help"}, 0},
		{nil, 2}, // no command: usage, but a usage error
	} {
		code, stdout, stderr := cli(t, tc.args...)
		if code != tc.code || stderr != "" {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and nothing on stderr", tc.args, code, stderr, tc.code)
		}
		if !strings.HasPrefix(stdout, "clickgate: OAuth 2.0 / OpenID Connect sign-in") || !strings.Contains(stdout, "Usage: clickgate <command> [flags]") ||
			!strings.Contains(stdout, "Run 'clickgate <command> --help' for a command's flags.") {
			t.Errorf("%q: usage on stdout:\n%s", tc.args, stdout)
		}
		for _, name := range commandNames() {
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + ` +` + regexp.QuoteMeta(commands[name].summary) + `$`).MatchString(stdout) {
				t.Errorf("%q: usage does not list %s with its summary:\n%s", tc.args, name, stdout)
			}
		}
	}
}

// The commands of DESIGN.md's CLI section exist.
func TestDocumentedCommands(t *testing.T) {
	for _, name := range []string{"serve", "mcp", "login", "token", "query", "whoami", "check-config", "audit", "demo", "version"} {
		if _, ok := commands[name]; !ok {
			t.Errorf("no command %q", name)
		}
	}
}

// --help and -h on every command: exit 0 and its usage (synopsis, purpose,
// flags), which the flag package writes to stderr; stdout stays empty.
func TestHelpOnEveryCommand(t *testing.T) {
	isolate(t)
	for _, name := range commandNames() {
		for _, args := range [][]string{{name, "--help"}, {name, "-h"}, append(flagArgs(name), "--help")} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				code, stdout, stderr := cli(t, args...)
				if code != 0 {
					t.Errorf("exit %d, want 0\n%s", code, stderr)
				}
				if stdout != "" {
					t.Errorf("stdout %q, want nothing", stdout)
				}
				// demo explains itself at length instead of its summary.
				if !strings.HasPrefix(stderr, "Usage: clickgate "+name) || (name != "demo" && !strings.Contains(stderr, commands[name].summary)) {
					t.Errorf("usage:\n%s", stderr)
				}
			})
		}
	}
	// Flags are listed with their defaults.
	_, _, stderr := cli(t, "check-config", "--help")
	for _, want := range []string{"Flags:", "-config string", `(default "clickgate.yaml")`, "-groups string"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("check-config --help lacks %q:\n%s", want, stderr)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	isolate(t)
	for _, name := range []string{"nonsense", "Serve", "--config", "-x", "serve-all"} {
		code, stdout, stderr := cli(t, name, "--help")
		if code != 2 || stdout != "" {
			t.Errorf("%q: exit %d, stdout %q; want exit 2 and nothing on stdout", name, code, stdout)
		}
		if !strings.HasPrefix(stderr, fmt.Sprintf("clickgate: unknown command %q\n", name)) ||
			!strings.Contains(stderr, "Commands:") || !strings.Contains(stderr, "Run 'clickgate <command> --help'") {
			t.Errorf("%q: stderr does not name the command and list the real ones:\n%s", name, stderr)
		}
	}
}

// A flag a command does not have: exit 2, and stderr names the flag and
// shows the command's real ones.
func TestUnknownFlagOnEveryCommand(t *testing.T) {
	isolate(t)
	for _, name := range commandNames() {
		args := append(flagArgs(name), "--no-such-flag")
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, stdout, stderr := cli(t, args...)
			if code != 2 || stdout != "" {
				t.Errorf("exit %d, stdout %q; want exit 2 and nothing on stdout", code, stdout)
			}
			if !strings.HasPrefix(stderr, "flag provided but not defined: -no-such-flag\nUsage: clickgate "+name) {
				t.Errorf("stderr:\n%s", stderr)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		name   string
		args   []string
		stderr []string // in this order
	}{
		{"stray argument", []string{"version", "extra"}, []string{`unexpected argument "extra"`, "Usage: clickgate version"}},
		{"stray argument after flags", []string{"check-config", "--config", "x.yaml", "extra"}, []string{`unexpected argument "extra"`, "Usage: clickgate check-config"}},
		{"bad duration", []string{"token", "--min-valid", "soon"}, []string{`invalid value "soon" for flag -min-valid`, "Usage: clickgate token"}},
		{"bad boolean", []string{"whoami", "--json=maybe"}, []string{`invalid boolean value "maybe" for -json`, "Usage: clickgate whoami"}},
		{"flag without value", []string{"serve", "--config"}, []string{"flag needs an argument: -config", "Usage: clickgate serve"}},
		{"query without SQL", []string{"query"}, []string{`query needs the SQL to run as its argument ("-" reads it from standard input)`, "Usage: clickgate query"}},
		{"query with blank SQL", []string{"query", "  "}, []string{"query needs the SQL", "Usage: clickgate query"}},
		{"query with flags only", []string{"query", "--format", "TSV"}, []string{"query needs the SQL", "Usage: clickgate query"}},
		{"query with two SQL arguments", []string{"query", "SELECT 1", "SELECT 2"}, []string{`unexpected argument "SELECT 2"`, "Usage: clickgate query"}},
		{"query with a bad flag after the SQL", []string{"query", "SELECT 1", "--nope"}, []string{"flag provided but not defined: -nope", "Usage: clickgate query"}},
		{"login --issuer without --client-id", []string{"login", "--issuer", "https://idp.example"}, []string{"--issuer needs --client-id", "Usage: clickgate login"}},
		{"idp without subcommand", []string{"idp"}, []string{"Usage: clickgate idp rotate-key --config clickgate.yaml"}},
		{"broker with an unknown subcommand", []string{"broker", "rotate"}, []string{"Usage: clickgate broker rotate-key --config clickgate.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := cli(t, tc.args...)
			wantFailure(t, code, stdout, stderr, 2, tc.stderr)
		})
	}
}

// wantFailure checks a failed run: exit code want, nothing on stdout and
// each of msgs on stderr, in this order.
func wantFailure(t *testing.T, code int, stdout, stderr string, want int, msgs []string) {
	t.Helper()
	if code != want || stdout != "" {
		t.Errorf("exit %d, stdout %q; want exit %d and nothing on stdout", code, stdout, want)
	}
	rest := stderr
	for _, msg := range msgs {
		i := strings.Index(rest, msg)
		if i < 0 {
			t.Fatalf("stderr lacks %q (in order):\n%s", msg, stderr)
		}
		rest = rest[i+len(msg):]
	}
}

func TestVersion(t *testing.T) {
	isolate(t)
	code, stdout, stderr := cli(t, "version")
	if code != 0 || stderr != "" || !regexp.MustCompile(`^clickgate \S+\n$`).MatchString(stdout) {
		t.Errorf("version: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	saved := version
	t.Cleanup(func() { version = saved })
	version = "v1.2.3"
	if code, stdout, _ := cli(t, "version"); code != 0 || stdout != "clickgate v1.2.3\n" {
		t.Errorf("version set at build time: exit %d, %q", code, stdout)
	}
}

// writeFile writes content to name in dir and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// validConfig is the identity core (no clickhouse section) trusting key,
// listening on any free loopback port; extra is appended.
func validConfig(t *testing.T, dir string, key *testkit.Key, extra string) string {
	t.Helper()
	return writeFile(t, dir, "clickgate.yaml", fmt.Sprintf(`server:
  listen: 127.0.0.1:0
  public_url: http://127.0.0.1:8443
token_processors:
  corp:
    type: jwt
    issuer: https://idp.test
    jwks_file: %s
    audiences: [clickhouse]
    username_claim: email
directory:
  roles:
    mapping: {"/ch-admins": ch-admin}
    filter: "^ch-.*$"
    transform: "s/^ch-//; s/-/_/g"
    common: [mcp_reader]
audit:
  file: %s
%s`, testkit.WriteJWKS(t, dir, key), filepath.Join(dir, "session.log"), extra))
}

const mappedSection = `clickhouse:
  url: http://127.0.0.1:1
  mode: mapped
  accounts: [{role: mcp_reader, user: reader, password: reader-pw}]
`

func TestCheckConfig(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	valid := validConfig(t, dir, key, "")

	code, stdout, stderr := cli(t, "check-config", "--config", valid, "--groups", "/ch-admins,ch-data-eng,staff")
	if code != 0 || stderr != "" {
		t.Fatalf("valid config: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		valid + " is valid.\n",
		"Server: listens on 127.0.0.1:0 (plain HTTP); public URL http://127.0.0.1:8443; MCP resource http://127.0.0.1:8443/mcp.",
		"Token processors, tried in this order (directory.processors):\n  1. corp (jwt)",
		"keys from the file " + filepath.Join(dir, "jwks.json"),
		`iss must be "https://idp.test"`,
		"the gateway and /clickhouse/auth take a token only when its aud includes one of: clickhouse",
		`user name from claim "email"`,
		"groups [/ch-admins, ch-data-eng, staff] become roles [admin, data_eng, mcp_reader]",
		"no clickhouse section, so the gateway is off",
		"Audit trail: one event per sign-in, gateway query, MCP tool call and OAuth broker action (read it with: clickgate audit --config " + valid + "):",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("explanation lacks %q:\n%s", want, stdout)
		}
	}
	// Without --groups, a few samples run through the pipeline.
	if code, stdout, _ := cli(t, "check-config", "--config", valid); code != 0 || !strings.Contains(stdout, "example: groups") {
		t.Errorf("without --groups: exit %d\n%s", code, stdout)
	}
	// With a clickhouse section, the mode is explained.
	withCH := validConfig(t, t.TempDir(), key, mappedSection)
	if code, stdout, stderr := cli(t, "check-config", "--config", withCH); code != 0 || !strings.Contains(stdout, "mapped") || strings.Contains(stdout, "gateway is off") {
		t.Errorf("with a clickhouse section: exit %d\n%s%s", code, stdout, stderr)
	}

	jwks := filepath.Join(dir, "jwks.json")
	for _, tc := range []struct {
		name   string
		config string
		stderr []string
	}{
		{"unknown key", "token_processors:\n  corp:\n    type: jwt\n    isuser: x\n",
			[]string{"clickgate check-config: config ", "token_processors.corp.isuser (line 4): unknown key; known keys here: ", "issuer"}},
		{"missing keys and audiences", "token_processors:\n  corp: {type: jwt, issuer: https://idp.test}\n",
			[]string{"2 problems:", "  - token_processors.corp: a jwt processor needs its keys: set jwks_uri, jwks_file or keys", "  - token_processors.corp.audiences: missing"}},
		{"unknown processor type", "token_processors:\n  corp: {type: saml}\n",
			[]string{`token_processors.corp.type: "saml" is not a processor type; use one of github, google, jwt, oidc, opaque, static`}},
		{"key file missing", strings.Replace(readFile(t, valid), jwks, filepath.Join(dir, "missing.json"), 1),
			[]string{"clickgate check-config: config ", "token_processors.corp.jwks_file: ", "missing.json"}},
		{"key file not keys", strings.Replace(readFile(t, valid), jwks, writeFile(t, dir, "notkeys.json", "hello"), 1),
			[]string{"clickgate check-config: config ", "token_processors.corp.jwks_file: no PEM public key or JWK set found"}},
		{"bad role filter", strings.Replace(readFile(t, valid), `filter: "^ch-.*$"`, `filter: "("`, 1),
			[]string{"clickgate check-config: ", "directory.roles.filter"}},
		{"not YAML", "server: [\n", []string{"clickgate check-config: config "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "clickgate.yaml", tc.config)
			code, stdout, stderr := cli(t, "check-config", "--config", path)
			wantFailure(t, code, stdout, stderr, 1, tc.stderr)
		})
	}

	// No such file; the default name when --config is not given.
	code, stdout, stderr = cli(t, "check-config", "--config", filepath.Join(dir, "nope.yaml"))
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "clickgate check-config: config: open "+filepath.Join(dir, "nope.yaml")+": no such file or directory") {
		t.Errorf("missing file: exit %d\n%s", code, stderr)
	}
	t.Chdir(t.TempDir())
	if code, _, stderr := cli(t, "check-config"); code != 1 || !strings.Contains(stderr, "open clickgate.yaml") {
		t.Errorf("default --config: exit %d\n%s", code, stderr)
	}
}

// check-config explains the audit trail (sinks and policies) and, for
// the shared-account modes, how ClickHouse learns who ran a query.
func TestCheckConfigAuditAndAttribution(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	trail := filepath.Join(dir, "session.log")
	const attribution = `ClickHouse sees a shared account, so the person is named in the user agent (query_log.http_user_agent "… clickgate (user <person>)") on every ClickHouse version, in log_comment (user, roles, audit event_id) on ClickHouse ≥ 20.12 for accounts not at readonly = 1, `
	const serviceSection = "clickhouse:\n  url: http://127.0.0.1:1\n  mode: service\n  user: svc\n"
	for _, tc := range []struct {
		name        string
		config      string // validConfig's extra, or a whole file when it starts with "server:"
		want, never []string
	}{
		{"file only, the defaults", "", []string{
			"\nAudit trail: one event per sign-in, gateway query, MCP tool call and OAuth broker action (read it with: clickgate audit --config ",
			"\n  - file: JSON lines appended to " + trail + " (mode 0600), not rotated by clickgate: it reopens the file on SIGHUP (for logrotate)\n",
			"\n  - query_text full: the SQL as sent (never an INSERT's data; clipped at 64 KiB)\n",
			"\n  - login_success per_token: one LoginSuccess per token and interface per hour (every Query and ToolCall names the person anyway); LoginFailure every time\n",
			"\n  - not required: queries and tool calls run even when no sink can record them (audit.required: true refuses them)\n",
		}, []string{"ClickHouse table", "shared account", "quota_key", "Warnings:"}},
		{"file and table, every setting", `  max_size: 1048576
  max_files: 3
  query_text: none
  login_success: per_request
  required: true
  clickhouse:
    url: http://ch.internal:8123
    user: auditor
    database: ops
    table: trail
    batch_rows: 500
    flush_interval: 2s
    spool_dir: /var/spool/clickgate
    spool_max_bytes: 10485760
    ttl: 720h
`, []string{
			"\n  - file: JSON lines appended to " + trail + " (mode 0600), rotated at 1 MiB into " + trail + ".1 … " + trail + ".3\n",
			"\n  - ClickHouse table ops.trail at http://ch.internal:8123 as auditor (created when missing): inserted in batches of 500 events or every 2s; " +
				"batches ClickHouse cannot take wait in /var/spool/clickgate (at most 10 MiB, then events are dropped and counted) and are replayed in order; events deleted 30 days after their time (TTL, ClickHouse ≥ 19.6)\n",
			"\n  - clickgate audit reads the table\n",
			"\n  - query_text none: no SQL; each query's kind, account, outcome, duration and rows are still recorded\n",
			"\n  - login_success per_request: a LoginSuccess for every authenticated request, a LoginFailure for every refused one\n",
			"\n  - required: queries and tool calls are refused while no sink can persist their events\n",
		}, nil},
		{"table in the gateway's ClickHouse, redacted", "  query_text: redacted\n  clickhouse: {spool_dir: /var/spool/clickgate}\n" + serviceSection, []string{
			"\n  - ClickHouse table default.clickgate_audit at http://127.0.0.1:1 as svc (created when missing): inserted in batches of 1000 events or every 1s; " +
				"batches ClickHouse cannot take wait in /var/spool/clickgate (at most 1 GiB, then events are dropped and counted) and are replayed in order; " +
				"events kept until you delete them (audit.clickhouse.ttl deletes them after a while, ClickHouse ≥ 19.6)\n",
			"\n  - query_text redacted: the SQL with every literal replaced by ? (MCP tool arguments keep only their names, ClickHouse's messages only their code)\n",
		}, nil},
		{"service mode without quota_key", serviceSection, []string{
			"in service mode:\n  - every query runs as svc\n  - " + attribution + "not in quota_key (clickhouse.quota_key is false)\n",
			"\n  - everyone shares svc's quota: for per-person quotas set clickhouse.quota_key: true and key that quota (<keyed>1</keyed> in users.xml, or KEYED BY client_key)\n",
		}, []string{"Warnings:"}},
		{"service mode with quota_key", serviceSection + "  quota_key: true\n", []string{
			"\n  - " + attribution + "and in quota_key, since clickhouse.quota_key is true (see the warning below)\n",
			"\nWarnings:\n  - clickhouse.quota_key is true: the quota of svc must be keyed (<keyed>1</keyed> in users.xml, or CREATE QUOTA … KEYED BY client_key), " +
				"or ClickHouse refuses every query with \"… doesn't allow client supplied keys\"\n",
		}, []string{"everyone shares"}},
		{"mapped mode without quota_key", mappedSection, []string{
			"\n  - " + attribution + "not in quota_key (clickhouse.quota_key is false)\n",
		}, []string{"everyone shares", "Warnings:"}},
		{"mapped mode with quota_key", strings.Replace(mappedSection, "  accounts: [{role: mcp_reader, user: reader, password: reader-pw}]",
			"  quota_key: true\n  accounts: [{role: mcp_reader, user: reader, password: reader-pw}, {role: admin, user: chief}, {role: analyst, user: reader}]", 1), []string{
			"\n  - " + attribution + "and in quota_key, since clickhouse.quota_key is true (see the warning below)\n",
			"\n  - clickhouse.quota_key is true: the quota of reader, chief must be keyed (",
		}, []string{"everyone shares"}},
		{"bearer mode: no attribution", "clickhouse:\n  url: http://127.0.0.1:1\n  mode: bearer\n  audience: clickhouse\n", nil, []string{"shared account", "quota_key"}},
		{"standard error", "", []string{"\n  - file: JSON lines on standard error (clickgate audit cannot read them back)\n"}, []string{"appended to"}},
		{"no trail", "", []string{"\nAudit trail: off, nothing is recorded (set audit.file and/or audit.clickhouse; clickgate audit reads them back).\n"}, []string{"query_text", "login_success"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := validConfig(t, dir, key, tc.config)
			switch tc.name {
			case "standard error":
				writeFile(t, dir, "clickgate.yaml", strings.Replace(readFile(t, path), "  file: "+trail+"\n", "  file: \"-\"\n", 1))
			case "no trail":
				writeFile(t, dir, "clickgate.yaml", strings.Replace(readFile(t, path), "  file: "+trail+"\n", "  query_text: full\n", 1))
			}
			code, stdout, stderr := cli(t, "check-config", "--config", path)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d\n%s", code, stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(stdout, want) {
					t.Errorf("explanation lacks %q:\n%s", want, stdout)
				}
			}
			for _, never := range tc.never {
				if strings.Contains(stdout, never) {
					t.Errorf("explanation has %q:\n%s", never, stdout)
				}
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// serve and mcp refuse a bad configuration before starting, pointing at
// check-config.
func TestServerCommandsRefuseBadConfig(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", "token_processors:\n  corp: {type: jwt, issuer: https://idp.test}\n")
	for _, name := range []string{"serve", "mcp"} {
		code, stdout, stderr := cli(t, name, "--config", bad)
		if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "clickgate "+name+": config "+bad+": 2 problems:") ||
			!strings.HasSuffix(stderr, "(run 'clickgate check-config --config "+bad+"' for an explanation)\n") {
			t.Errorf("%s: exit %d, stdout %q\n%s", name, code, stdout, stderr)
		}
	}
	valid := validConfig(t, dir, testkit.NewKey(t, jose.ES256, "k1"), "")
	code, _, stderr := cli(t, "serve", "--config", valid, "--log-level", "loud")
	if code != 1 || stderr != "clickgate serve: --log-level: \"loud\" is not one of debug, info, warn, error\n" {
		t.Errorf("bad log level: exit %d\n%s", code, stderr)
	}
}

// serve runs until its context ends, then stops cleanly with exit 0.
func TestServe(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	cfg := validConfig(t, dir, key, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testkit.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfg}, &stdout, &stderr) }()

	addrRE := regexp.MustCompile(`msg="clickgate listening" address=(127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
		select {
		case code := <-done:
			t.Fatalf("serve ended early with exit %d:\n%s", code, stderr.String())
		default:
		}
	}
	if addr == "" {
		t.Fatalf("serve did not say where it listens:\n%s", stderr.String())
	}
	get := func(path, authorization string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := get("/healthz", ""); status != http.StatusOK {
		t.Errorf("/healthz: %d %s", status, body)
	}
	tok := key.Sign(t, testkit.Claims("https://idp.test", "clickhouse", "alice@example.com", "/ch-admins"))
	status, body := get("/whoami", "Bearer "+tok)
	var who struct {
		Principal struct {
			User  string   `json:"user"`
			Roles []string `json:"roles"`
		} `json:"principal"`
	}
	if err := json.Unmarshal([]byte(body), &who); status != http.StatusOK || err != nil || who.Principal.User != "alice@example.com" ||
		strings.Join(who.Principal.Roles, ",") != "admin,mcp_reader" {
		t.Errorf("/whoami: %d %s", status, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve: exit %d after its context ended:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	if stdout.String() != "" {
		t.Errorf("serve wrote to stdout: %q", stdout.String())
	}
	// The session log is the file the configuration names.
	if log := readFile(t, filepath.Join(dir, "session.log")); !strings.Contains(log, `"type":"LoginSuccess"`) || strings.Contains(log, tok) {
		t.Errorf("session log:\n%s", log)
	}
}

func TestMCPStdio(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")

	// The identity core alone has no MCP.
	noCH := validConfig(t, dir, key, "")
	if code, stdout, stderr := cli(t, "mcp", "--config", noCH); code != 1 || stdout != "" ||
		stderr != "clickgate mcp: MCP needs a clickhouse section and mcp.enabled (the default) in the configuration\n" {
		t.Errorf("without clickhouse: exit %d %q\n%s", code, stdout, stderr)
	}

	mapped := validConfig(t, t.TempDir(), key, mappedSection)
	code, stdout, stderr := cli(t, "mcp", "--config", mapped)
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "clickgate mcp: no token: set CLICKGATE_TOKEN (for example CLICKGATE_TOKEN=$(clickgate token))") {
		t.Errorf("no token: exit %d %q\n%s", code, stdout, stderr)
	}

	// A token that does not verify is refused before MCP starts, with the
	// reason and without the token.
	bad := testkit.NewKey(t, jose.ES256, "k1").Sign(t, testkit.Claims("https://idp.test", "clickhouse", "alice@example.com"))
	t.Setenv("CLICKGATE_TOKEN", bad)
	code, stdout, stderr = cli(t, "mcp", "--config", mapped)
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "clickgate mcp: CLICKGATE_TOKEN: token: corp: signature does not verify") || strings.Contains(stderr, bad) {
		t.Errorf("bad token: exit %d %q\n%s", code, stdout, stderr)
	}
}

// signIn caches a sign-in as 'clickgate login' would, remembering server.
func signIn(t *testing.T, server string, sess *login.Session) {
	t.Helper()
	store, err := login.NewStore("")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Save(sess); err != nil {
		t.Fatal(err)
	}
	if err := store.SetCurrent(&login.Current{Server: server, Issuer: sess.Issuer, ClientID: sess.ClientID}); err != nil {
		t.Fatal(err)
	}
}

// token, whoami and query need a cached sign-in; without one they say to
// run 'clickgate login', and touch no network.
func TestNotSignedIn(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		stderr string
	}{
		{"token", nil, []string{"token"}, "clickgate token: not signed in: run 'clickgate login' first\n"},
		{"token at an issuer", nil, []string{"token", "--issuer", "https://idp.example/"},
			"clickgate token: not signed in at https://idp.example as clickgate-cli (run 'clickgate login')\n"},
		{"whoami without a server", nil, []string{"whoami"},
			"clickgate whoami: no clickgate server: pass --server URL, set CLICKGATE_SERVER, or sign in with 'clickgate login --server URL'\n"},
		{"whoami", nil, []string{"whoami", "--server", "http://127.0.0.1:1"}, "clickgate whoami: not signed in: run 'clickgate login' first\n"},
		{"whoami with the server from the environment", map[string]string{serverEnv: "http://127.0.0.1:1"}, []string{"whoami"},
			"clickgate whoami: not signed in: run 'clickgate login' first\n"},
		{"whoami with a server that is not a URL", nil, []string{"whoami", "--server", "ftp://host"},
			"clickgate whoami: --server \"ftp://host\" is not an http(s) URL such as http://127.0.0.1:8443\n"},
		{"query without a server", nil, []string{"query", "SELECT 1"},
			"clickgate query: no clickgate server: pass --server URL, set CLICKGATE_SERVER, or sign in with 'clickgate login --server URL'\n"},
		{"query", nil, []string{"query", "--server", "http://127.0.0.1:1", "SELECT 1"}, "clickgate query: not signed in: run 'clickgate login' first\n"},
		{"query, flags after the SQL", nil, []string{"query", "SELECT 1", "--server", "http://127.0.0.1:1"}, "clickgate query: not signed in: run 'clickgate login' first\n"},
		{"login at a server that is not a URL", nil, []string{"login", "--server", "127.0.0.1:8443"},
			"clickgate login: --server \"127.0.0.1:8443\" is not an http(s) URL such as http://127.0.0.1:8443\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := cli(t, tc.args...)
			if code != 1 || stdout != "" || stderr != tc.stderr {
				t.Errorf("exit %d, stdout %q, stderr\n%q\nwant exit 1 and\n%q", code, stdout, stderr, tc.stderr)
			}
		})
	}
	// logout has nothing to do, and says so.
	for _, args := range [][]string{{"logout"}, {"logout", "--all"}, {"logout", "--issuer", "https://idp.example"}} {
		code, stdout, stderr := cli(t, args...)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "Not signed in") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}

// An expired sign-in without a refresh token asks for a new login.
func TestSignInExpired(t *testing.T) {
	isolate(t)
	signIn(t, "http://127.0.0.1:1", &login.Session{
		Issuer: "https://idp.example", ClientID: "cli", TokenEndpoint: "http://127.0.0.1:1/token",
		AccessToken: "expired-access-token", Expiry: time.Now().Add(-time.Minute),
	})
	for _, name := range []string{"token", "whoami", "query"} {
		args := []string{name}
		if name == "query" {
			args = append(args, "SELECT 1")
		}
		code, stdout, stderr := cli(t, args...)
		if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "clickgate "+name+": ") ||
			!strings.Contains(stderr, "issued no refresh token") || !strings.HasSuffix(stderr, "run 'clickgate login'\n") ||
			strings.Contains(stderr, "expired-access-token") {
			t.Errorf("%s: exit %d, stdout %q\n%s", name, code, stdout, stderr)
		}
	}
}

// With a cached sign-in: token prints it, whoami and query send it to the
// remembered server (here a stand-in on loopback), and refusals become
// advice.
func TestSignedIn(t *testing.T) {
	isolate(t)
	const access = "access-token-of-alice"
	var gotQuery, gotFormat, gotDatabase, gotUA string
	refuse := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotUA = r.UserAgent()
		switch {
		case r.Header.Get("Authorization") != "Bearer "+access:
			http.Error(w, `{"error":"no token"}`, http.StatusUnauthorized)
		case refuse != 0:
			w.WriteHeader(refuse)
			fmt.Fprint(w, `{"error":"invalid_token","reason":"token: corp: token expired at 2026-01-01T00:00:00Z"}`)
		case r.URL.Path == "/whoami":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"identity":{"processor":"corp","issuer":"https://idp.example","subject":"sub-1","username":"alice@example.com","groups":["ch-admins"],"expiry":"2099-01-01T00:00:00Z"},`+
				`"principal":{"user":"alice@example.com","roles":["admin","mcp_reader"],"processor":"corp","subject":"sub-1","expiry":"2099-01-01T00:00:00Z"}}`)
		case r.URL.Path == "/" && r.Method == http.MethodPost:
			b, _ := io.ReadAll(r.Body)
			gotQuery, gotFormat, gotDatabase = string(b), r.URL.Query().Get("default_format"), r.URL.Query().Get("database")
			if gotQuery == "SELECT boom" {
				http.Error(w, "Code: 62. DB::Exception: Syntax error", http.StatusBadRequest)
				return
			}
			fmt.Fprint(w, "1\n")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	signIn(t, srv.URL, &login.Session{
		Issuer: "https://idp.example", ClientID: "cli", TokenEndpoint: srv.URL + "/token",
		AccessToken: access, Expiry: time.Now().Add(time.Hour),
	})

	if code, stdout, stderr := cli(t, "token"); code != 0 || stdout != access+"\n" || stderr != "" {
		t.Errorf("token: exit %d, %q, %q", code, stdout, stderr)
	}
	code, stdout, stderr := cli(t, "whoami")
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "You are alice@example.com at "+srv.URL+".\n") ||
		!regexp.MustCompile(`(?m)^  roles +admin, mcp_reader$`).MatchString(stdout) || !regexp.MustCompile(`(?m)^  processor +corp$`).MatchString(stdout) {
		t.Errorf("whoami: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.HasPrefix(gotUA, "clickgate-cli/") {
		t.Errorf("User-Agent %q", gotUA)
	}
	if code, stdout, _ := cli(t, "whoami", "--json"); code != 0 {
		t.Errorf("whoami --json: exit %d", code)
	} else if err := json.Unmarshal([]byte(stdout), &map[string]any{}); err != nil {
		t.Errorf("whoami --json: %q: %v", stdout, err)
	}
	code, stdout, stderr = cli(t, "query", "--format", "TSV", "--database", "usage", "SELECT 1")
	if code != 0 || stdout != "1\n" || stderr != "" || gotQuery != "SELECT 1" || gotFormat != "TSV" || gotDatabase != "usage" {
		t.Errorf("query: exit %d %q %q; server got %q format %q database %q", code, stdout, stderr, gotQuery, gotFormat, gotDatabase)
	}
	code, stdout, stderr = cli(t, "query", "SELECT boom")
	if code != 1 || stdout != "" || stderr != "clickgate query: "+srv.URL+" answered HTTP 400: Code: 62. DB::Exception: Syntax error\n" {
		t.Errorf("query error: exit %d %q\n%s", code, stdout, stderr)
	}
	refuse = http.StatusUnauthorized
	code, _, stderr = cli(t, "whoami")
	if code != 1 || stderr != "clickgate whoami: "+srv.URL+" refused your token (token: corp: token expired at 2026-01-01T00:00:00Z): run 'clickgate login'\n" {
		t.Errorf("refused: exit %d\n%s", code, stderr)
	}
	refuse = http.StatusForbidden
	code, _, stderr = cli(t, "query", "SELECT 1")
	if code != 1 || !strings.HasPrefix(stderr, "clickgate query: "+srv.URL+": access denied: token: corp:") || strings.Contains(stderr, access) {
		t.Errorf("denied: exit %d\n%s", code, stderr)
	}
	refuse = 0
	// A server that is not there.
	srvURL := srv.URL
	srv.Close()
	code, _, stderr = cli(t, "whoami")
	if code != 1 || !strings.HasPrefix(stderr, "clickgate whoami: cannot reach the clickgate server "+srvURL+": ") || strings.Contains(stderr, access) {
		t.Errorf("server down: exit %d\n%s", code, stderr)
	}

	// logout removes the sign-in; the provider offers no revocation.
	code, stdout, stderr = cli(t, "logout")
	if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "Signed out of https://idp.example: tokens removed from this computer (the provider offers no revocation") {
		t.Errorf("logout: exit %d %q %q", code, stdout, stderr)
	}
	if code, _, stderr := cli(t, "token"); code != 1 || !strings.Contains(stderr, "not signed in") {
		t.Errorf("token after logout: exit %d %q", code, stderr)
	}
}

// rotate-key needs the part it rotates to be on; then it writes a new key
// (mode 0600) and says so.
func TestRotateKey(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	plain := validConfig(t, dir, key, "")
	for _, tc := range []struct{ name, stderr string }{
		{"idp", "clickgate idp: dev_idp is not enabled in this configuration\n"},
		{"broker", "clickgate broker: broker is not enabled in this configuration\n"},
	} {
		if code, stdout, stderr := cli(t, tc.name, "rotate-key", "--config", plain); code != 1 || stdout != "" || stderr != tc.stderr {
			t.Errorf("%s rotate-key, off: exit %d %q %q", tc.name, code, stdout, stderr)
		}
	}
	state := t.TempDir()
	on := writeFile(t, state, "clickgate.yaml", fmt.Sprintf(`server: {listen: 127.0.0.1:0, public_url: http://127.0.0.1:8443}
token_processors:
  dev: {type: oidc, issuer: http://127.0.0.1:8443/idp, audiences: [clickhouse], username_claim: email}
%[2]sdev_idp:
  enabled: true
  key_file: %[1]s/dev-idp-keys.json
  users: [{username: alice, password: alice-pw, email: alice@example.com}]
broker:
  enabled: true
  upstream: dev
  key_file: %[1]s/broker-keys.json
  store_file: %[1]s/broker-state.json
`, state, mappedSection))
	for _, tc := range []struct{ name, file string }{{"idp", "dev-idp-keys.json"}, {"broker", "broker-keys.json"}} {
		code, stdout, stderr := cli(t, tc.name, "rotate-key", "--config", on)
		path := filepath.Join(state, tc.file)
		if code != 0 || stderr != "" || !regexp.MustCompile(`^New signing key \S+ in `+regexp.QuoteMeta(path)+`; the previous key stays published for `).MatchString(stdout) {
			t.Errorf("%s rotate-key: exit %d %q\n%s", tc.name, code, stdout, stderr)
			continue
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: key file %v %v", tc.name, fi, err)
		}
	}
}

// login against a server without a development IdP explains what to do,
// without opening a browser.
func TestLoginWithoutIdP(t *testing.T) {
	isolate(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	code, stdout, stderr := cli(t, "login", "--server", srv.URL, "--no-browser", "--timeout", "10s")
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "clickgate login: ") ||
		!strings.Contains(stderr, "(is 'clickgate serve' running at "+srv.URL+" with dev_idp enabled? To sign in at your company's IdP, use --issuer URL --client-id ID)") {
		t.Errorf("exit %d %q\n%s", code, stdout, stderr)
	}
}

// In service mode mcp runs without a token, as the local OS user, and
// speaks MCP on stdin and stdout until stdin ends.
func TestMCPStdioServiceMode(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	cfg := validConfig(t, dir, testkit.NewKey(t, jose.ES256, "k1"), "clickhouse:\n  url: http://127.0.0.1:1\n  mode: service\n  user: svc\n")
	in, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdin
	os.Stdin = in
	t.Cleanup(func() { os.Stdin = saved; in.Close() })
	var stdout, stderr testkit.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- run(context.Background(), []string{"mcp", "--config", cfg}, &stdout, &stderr) }()
	send := func(msg string) {
		if _, err := io.WriteString(w, msg+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if strings.Contains(stdout.String(), want) {
				return
			}
		}
		t.Fatalf("stdout lacks %q:\n%s\nstderr:\n%s", want, stdout.String(), stderr.String())
	}
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}`)
	waitFor(`"id":1`)
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	waitFor(`"id":2`)
	w.Close()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d at the end of stdin:\n%s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("mcp did not stop at the end of stdin")
	}
	// stdout carries only MCP messages: one JSON object per line.
	var tools []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var m struct {
			ID     int `json:"id"`
			Result struct {
				Tools []struct {
					Name string `json:"name"`
				} `json:"tools"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("stdout line is not a JSON-RPC message: %q", line)
		}
		for _, tool := range m.Result.Tools {
			tools = append(tools, tool.Name)
		}
	}
	sort.Strings(tools)
	if want := "describe_table explain_query list_databases list_tables run_query sample_rows search_schema"; strings.Join(tools, " ") != want {
		t.Errorf("tools %v, want %s (read-only by default)", tools, want)
	}
}
