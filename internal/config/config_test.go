package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/token"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

const minimal = `
token_processors:
  corp:
    type: jwt
    issuer: https://idp.test
    jwks_uri: https://idp.test/jwks
    audiences: [clickhouse]
`

func TestParseDefaults(t *testing.T) {
	cfg, err := parse([]byte(minimal), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.TokenProcessors["corp"]
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.Server.Listen, DefaultListen},
		{"public_url", cfg.Server.PublicURL, "http://" + DefaultListen},
		{"username_claim", p.UsernameClaim, "sub"},
		{"groups_claim", p.GroupsClaim, "groups"},
		{"leeway", p.Leeway, token.DefaultLeeway},
		{"cache_ttl", p.CacheTTL, token.DefaultCacheTTL},
		{"directory.processors", strings.Join(cfg.Directory.Processors, ","), "corp"},
		{"algorithms exclude HMAC", strings.Contains(strings.Join(p.Algorithms, ","), "HS"), false},
		{"no clickhouse section", cfg.ClickHouse == nil, true},
		{"mcp read-only", *cfg.MCP.ReadOnly, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestParseEnvAndDurations(t *testing.T) {
	data := minimal + `    leeway: 45s
    cache_ttl: 2m
    client_secret: ${SECRET}
    client_id: "${MISSING}"
`
	cfg, err := parse([]byte(data), env(map[string]string{"SECRET": "s3cr3t: not yaml {"}))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.TokenProcessors["corp"]
	if p.ClientSecret != "s3cr3t: not yaml {" {
		t.Errorf("client_secret = %q: env values must not be parsed as YAML", p.ClientSecret)
	}
	if p.Leeway != 45*time.Second || p.CacheTTL != 2*time.Minute {
		t.Errorf("durations: leeway %s, cache_ttl %s", p.Leeway, p.CacheTTL)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "MISSING") {
		t.Errorf("warnings = %q, want one naming MISSING", cfg.Warnings)
	}
	if strings.Contains(strings.Join(cfg.Warnings, " "), "s3cr3t") {
		t.Error("a warning leaked a secret value")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"unknown top-level key", minimal + "servr: {}\n", []string{"servr (line", "unknown key", "server"}},
		{"unknown nested key names the path", strings.Replace(minimal, "audiences:", "audience:", 1), []string{"token_processors.corp.audience", "audiences"}},
		{"unknown key in a list item", minimal + "clickhouse:\n  url: http://ch:8123\n  mode: mapped\n  accounts:\n    - {role: a, user: u, pasword: p}\n", []string{"clickhouse.accounts[0].pasword"}},
		{"bad duration", minimal + "    leeway: soon\n", []string{"soon"}},
		{"no processors", "server: {listen: 127.0.0.1:1}\n", []string{"at least one processor"}},
		{"bad type", strings.Replace(minimal, "type: jwt", "type: saml", 1), []string{`"saml" is not a processor type`}},
		{"unknown directory processor", minimal + "directory: {processors: [corp, nope]}\n", []string{"directory.processors[1]", `"nope"`}},
		{"bad listen", minimal + "server: {listen: nope}\n", []string{"server.listen"}},
		{"tls half set", minimal + "server: {tls: {cert_file: c.pem}}\n", []string{"server.tls"}},
		{"bad mode", minimal + "clickhouse: {url: http://ch:8123, mode: magic}\n", []string{"clickhouse.mode", "magic"}},
		{"mapped without accounts", minimal + "clickhouse: {url: http://ch:8123, mode: mapped}\n", []string{"clickhouse.accounts"}},
		{"url and urls", minimal + "clickhouse: {url: http://a:8123, urls: [http://b:8123, http://c:8123], mode: bearer, audience: ch}\n", []string{"url (one node) or urls"}},
		{"node listed twice", minimal + "clickhouse: {urls: [http://b:8123, http://b:8123], mode: bearer, audience: ch}\n", []string{"clickhouse.urls[1]", "twice"}},
		{"node not a URL", minimal + "clickhouse: {urls: [http://b:8123, b:8123], mode: bearer, audience: ch}\n", []string{"clickhouse.urls[1]"}},
		{"health timeout past the interval", minimal + "clickhouse: {url: http://b:8123, mode: bearer, audience: ch, health: {interval: 1s, timeout: 2s}}\n", []string{"clickhouse.health.timeout"}},
		{"negative retries", minimal + "clickhouse: {url: http://b:8123, mode: bearer, audience: ch, retries: -1}\n", []string{"clickhouse.retries"}},
		{"negative limit", minimal + "limits: {roles: {admin: {max_queue: -1}}}\n", []string{"limits.roles.admin.max_queue"}},
		{"limit network not a CIDR", minimal + "limits: {people: {bob: {networks: [10.0.0.0/33]}}}\n", []string{"limits.people.bob.networks[0]"}},
		{"not YAML", "token_processors: [\n", []string{"not valid YAML"}},
		{"empty", "", []string{"empty"}},
		{"several problems at once", "token_processors: {a: {type: x}, b: {type: y}}\n", []string{"2 problems", `"x"`, `"y"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse([]byte(tc.yaml), env(nil))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// The shipped example must stay valid.
func TestExampleConfig(t *testing.T) {
	for k, v := range map[string]string{"CORP_CLIENT_SECRET": "x", "CH_ADMIN_PASSWORD": "a", "CH_READER_PASSWORD": "r",
		"CLICKGATE_SEAL_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="} {
		t.Setenv(k, v)
	}
	cfg, err := Load(filepath.Join("..", "..", "examples", "clickgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TokenProcessors["corp"].Type != token.TypeOIDC || !cfg.Broker.Enabled || cfg.ClickHouse.Mode != ModeMapped || len(cfg.Warnings) != 0 {
		t.Fatalf("unexpected: %+v %v", cfg.TokenProcessors["corp"], cfg.Warnings)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestAliasFanOutIsBounded(t *testing.T) {
	_, err := parse([]byte(aliasFanOut(2000, 2000)), env(nil))
	if err == nil {
		t.Fatal("accepted")
	}
	if n := len(err.Error()); n > 16<<10 {
		t.Fatalf("the error is %d bytes", n)
	}
	if !strings.Contains(err.Error(), "and ") {
		t.Fatalf("no summary of the problems left out: %.300s", err)
	}
}

func TestMergeKeys(t *testing.T) {
	data := `
defaults: &defaults
  type: jwt
  issuer: https://idp.test
  jwks_uri: https://idp.test/jwks
  audiences: [clickhouse]
token_processors:
  a: {<<: *defaults}
  b:
    <<: *defaults
    issuer: https://other.test
`
	// defaults is not a known top-level key; merge keys themselves are fine.
	_, err := parse([]byte(data), env(nil))
	if err == nil || !strings.Contains(err.Error(), "defaults (line") || strings.Contains(err.Error(), "<<") {
		t.Fatalf("err = %v", err)
	}
}

func TestMetricsListen(t *testing.T) {
	tests := []struct {
		name   string
		server string
		want   string   // parsed metrics_listen when accepted
		errs   []string // substrings of the error when refused
	}{
		{"absent", "server: {listen: 127.0.0.1:8443}", "", nil},
		{"loopback", "server: {listen: 127.0.0.1:8443, metrics_listen: 127.0.0.1:9464}", "127.0.0.1:9464", nil},
		{"IPv6 loopback", `server: {listen: 127.0.0.1:8443, metrics_listen: "[::1]:9464"}`, "[::1]:9464", nil},
		{"every address", "server: {listen: 127.0.0.1:8443, metrics_listen: 0.0.0.0:9464}", "0.0.0.0:9464", nil},
		{"same host, other port", "server: {listen: 10.0.0.5:8443, metrics_listen: 10.0.0.5:9464}", "10.0.0.5:9464", nil},
		{"same port, other host", "server: {listen: 127.0.0.1:8443, metrics_listen: 127.0.0.2:8443}", "127.0.0.2:8443", nil},
		{"no port", "server: {metrics_listen: 127.0.0.1}", "", []string{"server.metrics_listen", "not host:port", "127.0.0.1:9464"}},
		{"URL", "server: {metrics_listen: http://127.0.0.1:9464}", "", []string{"server.metrics_listen", "not host:port"}},
		{"empty port", "server: {metrics_listen: \"127.0.0.1:\"}", "", []string{"server.metrics_listen", "port number"}},
		{"named port", "server: {metrics_listen: \"127.0.0.1:http\"}", "", []string{"server.metrics_listen", "port number"}},
		{"port 0", "server: {metrics_listen: \"127.0.0.1:0\"}", "", []string{"server.metrics_listen", "port number"}},
		{"port too large", "server: {metrics_listen: \"127.0.0.1:70000\"}", "", []string{"server.metrics_listen", "port number"}},
		{"the main listener", "server: {listen: 127.0.0.1:8443, metrics_listen: 127.0.0.1:8443}", "", []string{"server.metrics_listen", "overlaps server.listen"}},
		{"overlaps a wildcard main listener", "server: {listen: 0.0.0.0:8443, metrics_listen: 127.0.0.1:8443}", "", []string{"overlaps server.listen"}},
		{"wildcard overlaps the main listener", "server: {listen: 127.0.0.1:8443, metrics_listen: \":8443\"}", "", []string{"overlaps server.listen"}},
		{"misspelt key", "server: {metrics_listn: 127.0.0.1:9464}", "", []string{"server.metrics_listn", "unknown key", "metrics_listen"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parse([]byte(minimal+tc.server+"\n"), env(nil))
			if tc.errs != nil {
				if err == nil {
					t.Fatalf("accepted: metrics_listen = %q", cfg.Server.MetricsListen)
				}
				for _, w := range tc.errs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Server.MetricsListen != tc.want {
				t.Fatalf("metrics_listen = %q, want %q", cfg.Server.MetricsListen, tc.want)
			}
		})
	}
}
