package config

import (
	"slices"
	"strings"
	"testing"
)

func nativeConfig(server, clickhouse string) string {
	return `
server: {listen: 127.0.0.1:8443` + server + `}
token_processors:
  corp: {type: jwt, issuer: https://idp.example.com, jwks_uri: https://idp.example.com/jwks, audiences: [clickhouse]}
clickhouse:
  mode: service
  user: svc
` + clickhouse
}

func TestNativeKeys(t *testing.T) {
	for _, tc := range []struct {
		name, server, clickhouse string
		want                     []string // native_url after Load
		problem                  string
	}{
		{"default from url", ", native_listen: 127.0.0.1:9100", "  url: http://ch:8123\n", []string{"tcp://ch:9000"}, ""},
		{"default from https urls", ", native_listen: 127.0.0.1:9100", "  urls: [https://a:8443, https://b:8443]\n", []string{"tls://a:9440", "tls://b:9440"}, ""},
		{"one string", ", native_listen: 127.0.0.1:9100", "  url: http://ch:8123\n  native_url: tcp://x:9001\n", []string{"tcp://x:9001"}, ""},
		{"a list", ", native_listen: 127.0.0.1:9100", "  url: http://ch:8123\n  native_url: [tcp://x:9001, tls://y]\n", []string{"tcp://x:9001", "tls://y"}, ""},
		{"bad scheme", ", native_listen: 127.0.0.1:9100", "  url: http://ch:8123\n  native_url: http://x:9000\n", nil, "clickhouse.native_url[0]"},
		{"a path", ", native_listen: 127.0.0.1:9100", "  url: http://ch:8123\n  native_url: tcp://x:9000/db\n", nil, "clickhouse.native_url[0]"},
		{"overlaps listen", ", native_listen: 127.0.0.1:8443", "  url: http://ch:8123\n", nil, "overlaps server.listen"},
		{"not host:port", ", native_listen: nine", "  url: http://ch:8123\n", nil, "server.native_listen"},
		{"tls without listener", ", native_tls: {cert_file: c, key_file: k}", "  url: http://ch:8123\n", nil, "server.native_tls"},
		{"half tls", ", native_listen: 127.0.0.1:9440, native_tls: {cert_file: c}", "  url: http://ch:8123\n", nil, "set both"},
		{"chdb", ", native_listen: 127.0.0.1:9100", "  url: chdb:///tmp/x\n", nil, "chdb://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := nativeConfig(tc.server, tc.clickhouse)
			if tc.name == "chdb" {
				yaml = strings.Replace(yaml, "  user: svc\n", "", 1)
			}
			cfg, err := Parse([]byte(yaml))
			if tc.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("got %v, want a problem naming %q", err, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal([]string(cfg.ClickHouse.NativeURL), tc.want) {
				t.Fatalf("native_url %v, want %v", cfg.ClickHouse.NativeURL, tc.want)
			}
			if _, err := cfg.ClickHouse.NativeNodes(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseNativeURL(t *testing.T) {
	for in, want := range map[string]NativeNode{
		"tcp://127.0.0.1":      {Addr: "127.0.0.1:9000"},
		"tls://ch.example.com": {Addr: "ch.example.com:9440", TLS: true},
		"tcp://[::1]:9001":     {Addr: "[::1]:9001"},
	} {
		got, err := ParseNativeURL(in)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v, want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"127.0.0.1:9000", "tcp://", "tcp://h:0", "tcp://h:99999", "tcp://u:p@h:9000", "tcp://h:9000?x=1"} {
		if _, err := ParseNativeURL(bad); err == nil {
			t.Errorf("%s was accepted", bad)
		}
	}
}
