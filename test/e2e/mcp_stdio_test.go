package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// A local agent starts 'clickgate mcp' as a subprocess and speaks MCP over
// its stdin and stdout, signed in with the person's token.
func TestMCPOverStdio(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.EdDSA, "k1")
	cfg := filepath.Join(dir, "clickgate.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse], username_claim: email}
directory:
  roles: {common: [mcp_reader]}
clickhouse:
  url: %s
  mode: mapped
  accounts: [{role: mcp_reader, user: ch_reader, password: reader-pw}]
`, issuer, testkit.WriteJWKS(t, dir, key), ch.HTTPURL)), 0o600)

	run := func(token string) (*mcp.ClientSession, error) {
		cmd := exec.Command(testkit.Clickgate, "mcp", "--config", cfg)
		cmd.Env = append(os.Environ(), "CLICKGATE_TOKEN="+token)
		client := mcp.NewClient(&mcp.Implementation{Name: "stdio-test", Version: "1"}, nil)
		return client.Connect(context.Background(), &mcp.CommandTransport{Command: cmd}, nil)
	}
	cs, err := run(key.Sign(t, testkit.Claims(issuer, "clickhouse", "alice@example.com")))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_query", Arguments: map[string]any{"query": chtest.CurrentUserSQL()}})
	if err != nil || res.IsError {
		t.Fatalf("run_query over stdio: %v %+v", err, res)
	}
	if text := res.Content[0].(*mcp.TextContent).Text; !strings.Contains(text, "ch_reader") {
		t.Fatalf("run_query over stdio: %s", text)
	}
	// A bad token: the process says why on stderr and exits.
	cmd := exec.Command(testkit.Clickgate, "mcp", "--config", cfg)
	cmd.Env = append(os.Environ(), "CLICKGATE_TOKEN=not-a-token")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "CLICKGATE_TOKEN") {
		t.Fatalf("bad token: %v\n%s", err, out)
	}
}
