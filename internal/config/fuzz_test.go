package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/token"
)

// fullConfig is the configuration of DESIGN.md with every section set.
// The account passwords are quoted: DESIGN.md's unquoted
// {…, password: ${CH_ADMIN_PASSWORD}} is not valid YAML, since { and }
// are flow indicators (kept below as a broken seed).
const fullConfig = `
server:
  listen: 127.0.0.1:8443
  public_url: http://127.0.0.1:8443/
  tls: {cert_file: "", key_file: ""}
  allowed_origins: [http://localhost:6274]
token_processors:
  corp:
    type: oidc
    issuer: https://idp.example.com/realms/corp
    jwks_uri: ""
    jwks_file: ""
    userinfo_url: ""
    introspection_url: ""
    client_id: clickgate
    client_secret: ${CORP_CLIENT_SECRET}
    audiences: [clickhouse]
    algorithms: [RS256, ES256, EdDSA]
    required_claims: {email_verified: true, tier: [gold, 2], acr: "1"}
    username_claim: email
    groups_claim: groups
    leeway: 30s
    cache_ttl: 5m
  static:
    type: jwt
    issuer: https://ci.example.com
    keys: |
      {"keys": []}
    audiences: [clickhouse]
    max_key_staleness: 1h
  hmac:
    type: jwt
    issuer: https://hmac.example.com
    shared_secret: "0123456789abcdef0123456789abcdef"
    algorithms: [HS256]
    audiences: ["${AUD}"]
  gh: {type: github, client_id: abc, client_secret: def}
  goog: {type: google, client_id: 123.apps.googleusercontent.com, hosted_domain: example.com}
  intro:
    type: opaque
    introspection_url: https://idp.example.com/introspect
    userinfo_url: https://idp.example.com/userinfo
    client_id: rs
    client_secret: s
    audiences: [clickhouse]
directory:
  processors: [corp, static, hmac, gh, goog, intro]
  allowed_domains: [example.com]
  roles:
    mapping: {"/ch-admins": ch-admin}
    filter: "^ch-.*$"
    transform: "s/^ch-//; s/-/_/g"
    common: [mcp_reader]
clickhouse:
  url: http://127.0.0.1:8123
  mode: mapped
  user: clickgate_svc
  password: ${CLICKHOUSE_PASSWORD}
  audience: clickhouse
  auth_server: clickgate
  accounts:
    - {role: admin, user: ch_admin, password: "${CH_ADMIN_PASSWORD}"}
    - {role: mcp_reader, user: ch_reader, password: "${CH_READER_PASSWORD}"}
  provisioning: {create_users: true, sync_roles: true}
  settings: {max_execution_time: "30"}
mcp:
  enabled: true
  read_only: true
  max_result_rows: 1000
  max_result_bytes: 1048576
  query_timeout: 30s
broker:
  enabled: true
  upstream: corp
dev_idp:
  enabled: false
  users: [{username: alice, password: alice, email: alice@example.com, groups: [ch-analysts]}]
audit:
  file: "-"
`

// aliasFanOut is a small file whose one anchor is referenced many times;
// it once made checkKeys report keys × references problems.
func aliasFanOut(keys, refs int) string {
	var b strings.Builder
	b.WriteString("x: &x\n")
	for i := 0; i < keys; i++ {
		fmt.Fprintf(&b, "  k%d: 1\n", i)
	}
	b.WriteString("token_processors:\n")
	for i := 0; i < refs; i++ {
		fmt.Fprintf(&b, "  p%d: *x\n", i)
	}
	return b.String()
}

// maxErrorBytes bounds Parse's error for an input of n bytes: every
// problem names a key of the input plus fixed text.
func maxErrorBytes(n int) int { return 4096 + 64*n }

// FuzzLoad: Parse never panics on arbitrary bytes; a refusal is a clear,
// bounded error; an accepted configuration is defaulted and consistent.
func FuzzLoad(f *testing.F) {
	seeds := []string{
		fullConfig,
		strings.NewReplacer(`"${CH_ADMIN_PASSWORD}"`, `${CH_ADMIN_PASSWORD}`, `"${CH_READER_PASSWORD}"`, `${CH_READER_PASSWORD}`).Replace(fullConfig), // as in DESIGN.md
		minimal,
		"",
		"---\n",
		"~\n",
		"[]\n",
		"42\n",
		"token_processors: 1\n",
		"token_processors: [corp]\n",
		"token_processors: {corp: ~}\n",
		"token_processors: {corp: {type: jwt}}\n",
		strings.Replace(fullConfig, "mode: mapped", "mode: magic", 1),
		strings.Replace(fullConfig, "leeway: 30s", "leeway: forever", 1),
		strings.Replace(fullConfig, "leeway: 30s", "leeway: -1h", 1),
		strings.Replace(fullConfig, "algorithms: [RS256, ES256, EdDSA]", "algorithms: [none]", 1),
		strings.Replace(fullConfig, "audiences: [clickhouse]", "audience: clickhouse", 1),
		strings.Replace(fullConfig, "  listen: 127.0.0.1:8443\n", "  listen: [a, b]\n", 1),
		strings.Replace(fullConfig, "max_result_rows: 1000", "max_result_rows: 1e99", 1),
		strings.Replace(fullConfig, "required_claims: {", "required_claims: {nested: {a: b}, ", 1),
		fullConfig[:len(fullConfig)/2],
		fullConfig[:len(fullConfig)/3] + "\t\x00\xff",
		strings.ReplaceAll(fullConfig, "  ", "\t"),
		minimal + "x: &a {b: *a}\n",
		"a: &a [*a]\ntoken_processors: *a\n",
		"token_processors: &p {corp: {type: jwt, issuer: i, keys: k, audiences: [a]}}\ndirectory: {processors: *p}\n",
		"token_processors:\n  corp: &c {type: jwt, issuer: https://i, jwks_uri: https://i/k, audiences: [a]}\n  copy: *c\n",
		"server:\n  listen: ${LISTEN}\n" + minimal,
		"server: {listen: ${LISTEN}}\n" + minimal,
		"server: {listen: \"${A}${B}${\"}\n" + minimal,
		"${KEY}: 1\n" + minimal,
		"<<: {server: {listen: x}}\n" + minimal,
		"token_processors: {corp: {<<: {type: jwt}, issuer: i}}\n",
		"!!binary aGVsbG8=\n",
		"server: !!map {listen: !!int 1}\n" + minimal,
		"%YAML 1.2\n---\n" + minimal + "...\n",
		minimal + "---\nsecond: document\n",
		minimal + "    client_id: ${YAML}\n",
		aliasFanOut(3, 3),
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := Parse(data); err != nil && err.Error() == "" {
			t.Fatal("Parse refused with an empty error")
		}
		cfg, err := parse(data, fuzzEnv)
		if err != nil {
			if cfg != nil {
				t.Fatal("parse returned a configuration and an error")
			}
			msg := err.Error()
			if msg == "" {
				t.Fatal("empty error")
			}
			var cerr *Error
			if errors.As(err, &cerr) && len(cerr.Problems) == 0 {
				t.Fatal("*Error without problems")
			}
			if len(msg) > maxErrorBytes(len(data)) {
				t.Fatalf("a %d-byte input gave a %d-byte error", len(data), len(msg))
			}
			return
		}
		checkAccepted(t, cfg)
		again, err := parse(data, fuzzEnv)
		if err != nil {
			t.Fatalf("second parse of an accepted input failed: %v", err)
		}
		if fmt.Sprintf("%+v", again.Server) != fmt.Sprintf("%+v", cfg.Server) ||
			!slices.Equal(again.Directory.Processors, cfg.Directory.Processors) {
			t.Fatal("parse is not deterministic")
		}
	})
}

// fuzzEnv is the environment FuzzLoad expands ${NAME} from.
func fuzzEnv(name string) (string, bool) {
	switch name {
	case "CORP_CLIENT_SECRET", "CLICKHOUSE_PASSWORD", "CH_ADMIN_PASSWORD", "CH_READER_PASSWORD":
		return "s3cr3t", true
	case "AUD":
		return "clickhouse", true
	case "LISTEN":
		return "127.0.0.1:9", true
	case "YAML":
		return "{a: [b, c]}: d", true
	}
	return "", false
}

// The full configuration seed must be accepted, or FuzzLoad would start
// far from the code that checks accepted configurations.
func TestFuzzLoadFullConfigAccepted(t *testing.T) {
	cfg, err := parse([]byte(fullConfig), fuzzEnv)
	if err != nil {
		t.Fatal(err)
	}
	checkAccepted(t, cfg)
	if len(cfg.Warnings) != 0 {
		t.Fatalf("warnings: %q", cfg.Warnings)
	}
}

// checkAccepted asserts what every accepted configuration guarantees.
func checkAccepted(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.Server.Listen == "" || cfg.Server.PublicURL == "" || strings.HasSuffix(cfg.Server.PublicURL, "/") {
		t.Fatalf("server not defaulted: %+v", cfg.Server)
	}
	if len(cfg.TokenProcessors) == 0 {
		t.Fatal("accepted a configuration without token processors")
	}
	types := []string{token.TypeJWT, token.TypeOIDC, token.TypeOpaque, token.TypeGitHub, token.TypeGoogle}
	for name, p := range cfg.TokenProcessors {
		if p == nil {
			t.Fatalf("processor %q is nil", name)
		}
		if !slices.Contains(types, p.Type) {
			t.Fatalf("processor %q has type %q", name, p.Type)
		}
		if p.UsernameClaim == "" || p.GroupsClaim == "" || p.CacheTTL <= 0 || p.Leeway < 0 || len(p.Algorithms) == 0 {
			t.Fatalf("processor %q not defaulted: %+v", name, p)
		}
		for _, a := range p.Algorithms {
			if strings.EqualFold(a, "none") {
				t.Fatalf("processor %q allows alg none", name)
			}
			if strings.HasPrefix(a, "HS") && len(p.SharedSecret) < 32 {
				t.Fatalf("processor %q allows %s without a long shared secret", name, a)
			}
		}
		if (p.Type == token.TypeJWT || p.Type == token.TypeOIDC) && len(p.Audiences) == 0 {
			t.Fatalf("processor %q accepts any audience", name)
		}
	}
	if len(cfg.Directory.Processors) == 0 {
		t.Fatal("no processor precedence")
	}
	for _, name := range cfg.Directory.Processors {
		if cfg.TokenProcessors[name] == nil {
			t.Fatalf("directory.processors names %q, which is not a processor", name)
		}
	}
	if cfg.MCP.Enabled == nil || cfg.MCP.ReadOnly == nil || cfg.MCP.MaxResultRows < 0 || cfg.MCP.MaxResultBytes < 0 {
		t.Fatalf("mcp not defaulted: %+v", cfg.MCP)
	}
	if ch := cfg.ClickHouse; ch != nil && (ch.URL == "" || ch.Mode == "") {
		t.Fatalf("clickhouse section accepted without url or mode: %+v", ch)
	}
	if cfg.Broker.Enabled && cfg.TokenProcessors[cfg.Broker.Upstream] == nil {
		t.Fatalf("broker upstream %q is not a processor", cfg.Broker.Upstream)
	}
}
