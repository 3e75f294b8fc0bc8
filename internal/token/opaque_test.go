package token

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Userinfo answers for any token its IdP issued, to any app, so an opaque
// processor that must check an audience refuses without introspection and
// never sends the token.
func TestOpaqueUserinfoOnlyCannotCheckAudience(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer opaque-token" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"sub": "u1", "email": "alice@example.com"})
	}))
	defer srv.Close()

	for _, tc := range []struct {
		name      string
		audiences []string
		want      Reason
		calls     int32
	}{
		{"audiences configured", []string{"clickhouse"}, ReasonAudience, 0},
		{"no audiences: userinfo decides", nil, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls.Store(0)
			cfg := &Config{Type: TypeOpaque, UserinfoURL: srv.URL, Audiences: tc.audiences, UsernameClaim: "email"}
			cfg.ApplyDefaults()
			v := newTestVerifier(t, cfg, fixedClock(testClock))
			id, err := v.Verify(context.Background(), "opaque-token")
			if got := ReasonOf(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if tc.want == "" && id.Username != "alice@example.com" {
				t.Fatalf("identity %+v", id)
			}
			if n := calls.Load(); n != tc.calls {
				t.Fatalf("userinfo called %d times, want %d", n, tc.calls)
			}
		})
	}
}
