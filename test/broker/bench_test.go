package broker

import (
	"net/http"
	"testing"
)

// BenchmarkBroker measures the broker's parts an MCP client waits for, in
// one process over loopback HTTP with the file store: a whole sign-in
// without a browser (consent page, Allow, dev IdP login, callback, code
// redemption), a refresh (one rotation in the store), and, for scale, a
// tools-less /mcp request with the access token it gives (verification
// cached after the first).
func BenchmarkBroker(b *testing.B) {
	s := newStack(b, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	b.Run("sign-in", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			s.tokens(b, c)
		}
	})
	b.Run("refresh", func(b *testing.B) {
		rt := s.tokens(b, c)["refresh_token"].(string)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			status, tok := s.refresh(b, c, rt)
			if status != http.StatusOK {
				b.Fatalf("refresh: %d %v", status, tok)
			}
			rt = tok["refresh_token"].(string)
		}
	})
	b.Run("mcp-initialize", func(b *testing.B) {
		access := s.tokens(b, c)["access_token"].(string)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if status, body := s.mcpInitialize(b, access); status != http.StatusOK {
				b.Fatalf("/mcp: %d %s", status, body)
			}
		}
	})
}
