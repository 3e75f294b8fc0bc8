package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// 'clickgate idp rotate-key' and 'clickgate broker rotate-key' add a
// signing key and keep the old one published.
func TestRotateKey(t *testing.T) {
	for _, tc := range []struct{ command, section string }{
		{"idp", "dev_idp:\n  enabled: true\n  key_file: %s\n  users: [{username: alice, password: alice, email: alice@example.com, groups: [ch-analysts]}]\n"},
		{"broker", "dev_idp: {enabled: true, key_file: %[1]s.idp}\nclickhouse: {url: http://127.0.0.1:8123, mode: service, user: svc}\nbroker:\n  enabled: true\n  upstream: dev\n  key_file: %[1]s\n"},
	} {
		t.Run(tc.command, func(t *testing.T) {
			dir := t.TempDir()
			keyFile := filepath.Join(dir, "keys.json")
			cfg := filepath.Join(dir, "clickgate.yaml")
			os.WriteFile(cfg, []byte(`
server: {public_url: http://127.0.0.1:8443}
token_processors:
  dev: {type: oidc, issuer: http://127.0.0.1:8443/idp, audiences: [clickhouse], username_claim: email}
`+fmt.Sprintf(tc.section, keyFile)), 0o600)
			kids := map[string]bool{}
			for i := 0; i < 2; i++ {
				out, code := clickgate(t, tc.command, "rotate-key", "--config", cfg)
				if code != 0 || !strings.Contains(out, "New signing key") {
					t.Fatalf("rotate-key: exit %d\n%s", code, out)
				}
				kids[strings.Fields(out)[3]] = true
			}
			data, err := os.ReadFile(keyFile)
			if err != nil {
				t.Fatal(err)
			}
			info, _ := os.Stat(keyFile)
			if info.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %v", info.Mode().Perm())
			}
			if !json.Valid(data) || len(kids) != 2 {
				t.Fatalf("kids %v; key file:\n%.400s", kids, data)
			}
			for kid := range kids {
				if !strings.Contains(string(data), kid) {
					t.Errorf("key %s is not in the key file (the old key must stay published)", kid)
				}
			}
			if out, code := clickgate(t, tc.command, "rotate-key", "--config", filepath.Join(dir, "nope.yaml")); code == 0 {
				t.Fatalf("missing config accepted: %s", out)
			}
		})
	}
}
