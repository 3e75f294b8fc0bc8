package chauth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The auth endpoint answers 200 only when the token's principal is the
// Basic user exactly: Basic with an empty user is not a token's user.
// (The gateway takes Basic(":" + token); the auth endpoint must not.)
func TestHandlerEmptyUser(t *testing.T) {
	for _, tc := range []struct {
		name     string
		password func(t *testing.T, e *endpoint) string
	}{
		{"token", func(t *testing.T, e *endpoint) string { return e.token(t, alice, nil) }},
		{"ticket", func(t *testing.T, e *endpoint) string { return e.ticket(t, alice) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t)
			r := httptest.NewRequest(http.MethodGet, "/clickhouse/auth", nil)
			r.Header.Set("Authorization", basic("", tc.password(t, e)))
			w := httptest.NewRecorder()
			e.handler.ServeHTTP(w, r)
			if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") != `Basic realm="clickgate"` ||
				!strings.Contains(w.Body.String(), "send Authorization: Basic with the ClickHouse user and a token as password") {
				t.Fatalf("Basic with an empty user and alice's %s: %d %q; want 401 asking for the user", tc.name, w.Code, w.Body.String())
			}
			if recs := e.records(t); len(recs) != 0 {
				t.Errorf("recorded %+v", recs)
			}
		})
	}
}
