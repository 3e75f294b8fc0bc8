package broker

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestSignInWithConfiguredClient(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1:53682/callback") // loopback: any port
	tok := s.tokens(t, c)
	if tok["token_type"] != "Bearer" || tok["refresh_token"] == "" || tok["expires_in"].(float64) != 60 {
		t.Fatalf("token response %v", tok)
	}
	status, body := s.get(t, "/whoami", tok["access_token"].(string))
	if status != http.StatusOK {
		t.Fatalf("whoami: %d %s", status, body)
	}
	var who struct {
		Principal struct {
			User  string   `json:"user"`
			Roles []string `json:"roles"`
		} `json:"principal"`
	}
	if err := json.Unmarshal([]byte(body), &who); err != nil {
		t.Fatal(err)
	}
	if who.Principal.User != "alice@example.com" || !slices.Equal(who.Principal.Roles, []string{"analysts", "mcp_reader"}) {
		t.Fatalf("whoami: %s", body)
	}
}

// In bearer mode ClickHouse verifies the forwarded token itself (trusting
// /oauth/jwks), so broker tokens also name ClickHouse's audience and the
// gateway passes them on.
func TestBearerModeTokensNameClickHouse(t *testing.T) {
	s := newStack(t, stackOptions{clickhouseMode: "  mode: bearer\n  audience: clickhouse-prod"})
	access := s.tokens(t, newClient("test-client", "http://127.0.0.1/callback"))["access_token"].(string)
	claims := jwtClaims(t, access)
	if aud := fmt.Sprint(claims["aud"]); aud != "["+s.base+"/mcp clickhouse-prod]" {
		t.Fatalf("aud %s", aud)
	}
	// Nothing listens at the ClickHouse URL: a 502 shows the token was let through.
	if status, body := s.get(t, "/?query=SELECT+1", access); status != http.StatusBadGateway {
		t.Fatalf("gateway: %d %s", status, body)
	}
}

// jwtClaims decodes a JWT's payload without verifying it.
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20s…", token)
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(data, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}
