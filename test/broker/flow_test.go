package broker

import (
	"encoding/json"
	"net/http"
	"slices"
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
