package token_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/token"
)

// staticTokens writes a tokens file listing each token's hash with its
// line ("user [groups]") and returns its path.
func staticTokens(t *testing.T, lines map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# service tokens\n\n")
	for tok, rest := range lines {
		sum := sha256.Sum256([]byte(tok))
		b.WriteString("sha256:" + hex.EncodeToString(sum[:]) + "  " + rest + "  # " + strings.Fields(rest)[0] + "\n")
	}
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStaticProcessor(t *testing.T) {
	const etl, bi = "etl-token-8f1c2a9d0b7e4f6a", "bi-token-3c5e7a9b1d2f4e6a"
	path := staticTokens(t, map[string]string{etl: "etl-bot ch-writers,ch-readers", bi: "bi-bot"})
	if data, _ := os.ReadFile(path); strings.Contains(string(data), etl) || strings.Contains(string(data), bi) {
		t.Fatal("the tokens file holds a token, not its hash")
	}
	cfg := &token.Config{Type: token.TypeStatic, TokensFile: path}
	if problems := validate(cfg); len(problems) > 0 {
		t.Fatal(problems)
	}
	p, err := token.New("services", cfg, token.Options{})
	if err != nil {
		t.Fatal(err)
	}
	v := token.NewVerifier([]token.Processor{p}, nil, nil, nil)
	for _, tc := range []struct {
		raw    string
		user   string
		groups []string
	}{
		{etl, "etl-bot", []string{"ch-writers", "ch-readers"}},
		{bi, "bi-bot", nil},
	} {
		id, err := v.Verify(context.Background(), tc.raw)
		if err != nil {
			t.Fatalf("%s: %v", tc.user, err)
		}
		if id.Username != tc.user || id.Processor != "services" || !slices.Equal(id.Groups, tc.groups) {
			t.Errorf("got %+v, want %s %v", id, tc.user, tc.groups)
		}
	}
	for _, raw := range []string{"", etl + "x", strings.ToUpper(etl), etl[:len(etl)-1]} {
		if id, err := v.Verify(context.Background(), raw); err == nil {
			t.Errorf("%q accepted as %s", raw, id.Username)
		} else if raw != "" && strings.Contains(err.Error(), raw) {
			t.Errorf("the error repeats the token: %v", err)
		}
	}
}

func TestStaticTokensFile(t *testing.T) {
	hash := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct{ name, file, want string }{
		{"no user", hash + "\n", "line 1: the user name is missing"},
		{"plain token", "secret-token alice\n", "line 1: the first field must be sha256:"},
		{"short hash", "sha256:abcd alice\n", "line 1: the first field"},
		{"listed twice", hash + " a\n" + hash + " b\n", "line 2: the same token is listed twice"},
		{"extra field", hash + " alice g1 g2\n", "line 1: want"},
		{"one user", hash + " alice\n", ""},
	} {
		path := filepath.Join(t.TempDir(), "tokens")
		if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		got := validate(&token.Config{Type: token.TypeStatic, TokensFile: path})
		switch {
		case tc.want == "" && len(got) > 0:
			t.Errorf("%s: %q", tc.name, got)
		case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
