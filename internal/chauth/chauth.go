// Package chauth is the endpoint that ClickHouse's http_authentication
// calls to check a user's credentials (src/Access/HTTPAuthClient.h):
// GET with Authorization: Basic base64(user:password); HTTP 200 means
// authenticated, anything else refused; a JSON body with a "settings"
// object is applied as session settings.
package chauth

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/token"
)

// Authenticator resolves a token to a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, c authn.Credentials, iface string) (*authn.Result, error)
}

// Response is the 200 body ClickHouse reads.
type Response struct {
	Settings map[string]string `json:"settings"`
}

// Handler answers 200 only when the password is a valid token whose
// principal's ClickHouse user equals the Basic user exactly.
func Handler(a Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, password, ok := r.BasicAuth()
		if !ok || password == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="clickgate"`)
			http.Error(w, "clickgate: send Authorization: Basic with the ClickHouse user and a token as password", http.StatusUnauthorized)
			return
		}
		_, err := a.Authenticate(r.Context(), r, authn.Credentials{Token: password, User: user}, audit.InterfaceAuthEndpoint)
		if err != nil {
			status := http.StatusUnauthorized
			switch {
			case token.IsTemporary(err):
				status = http.StatusServiceUnavailable
			case authn.Reason(err) == authn.ReasonDenied, authn.Reason(err) == authn.ReasonUserMismatch:
				status = http.StatusForbidden
			}
			http.Error(w, "clickgate: "+err.Error(), status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Response{Settings: map[string]string{}})
	})
}
