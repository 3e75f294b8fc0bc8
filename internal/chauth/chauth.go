// Package chauth is the endpoint that ClickHouse's http_authentication
// calls to check a user's credentials (src/Access/HTTPAuthClient.h):
// GET with Authorization: Basic base64(user:password); HTTP 200 means
// authenticated, anything else refused; a JSON body with a "settings"
// object is applied as session settings.
package chauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/clickhouse"
)

// Authenticator resolves a token to a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, c authn.Credentials, iface string) (*authn.Result, error)
}

// Response is the 200 body ClickHouse reads.
type Response struct {
	Settings map[string]string `json:"settings"`
}

// Tickets verifies clickgate's own http_auth tickets.
type Tickets interface {
	// Verify returns the user of a ticket, or clickhouse.ErrNotTicket when
	// the password is not one.
	Verify(raw string) (user string, err error)
}

// Handler answers 200 only when the password is a clickgate ticket (when
// tickets is not nil) or a valid token, whose ClickHouse user equals the
// Basic user exactly.
func Handler(a Authenticator, tickets Tickets, log *audit.Log) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, password, ok := r.BasicAuth()
		// An empty user is no one's: authn reads Credentials.User "" as
		// "any user", which suits the gateway but not this contract.
		if !ok || user == "" || password == "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="clickgate"`)
			http.Error(w, "clickgate: send Authorization: Basic with the ClickHouse user and a token as password", http.StatusUnauthorized)
			return
		}
		if tickets != nil {
			ticketUser, err := tickets.Verify(password)
			if !errors.Is(err, clickhouse.ErrNotTicket) {
				if err == nil && ticketUser != user {
					err = fmt.Errorf("the ticket is for ClickHouse user %q, not %q", ticketUser, user)
				}
				logTicket(log, r, user, err)
				if err != nil {
					http.Error(w, "clickgate: "+err.Error(), http.StatusForbidden)
					return
				}
				writeOK(w)
				return
			}
		}
		_, err := a.Authenticate(r.Context(), r, authn.Credentials{Token: password, User: user}, audit.InterfaceAuthEndpoint)
		if err != nil {
			http.Error(w, "clickgate: "+err.Error(), authn.Status(err))
			return
		}
		writeOK(w)
	})
}

func writeOK(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Response{Settings: map[string]string{}})
}

// logTicket records a ticket sign-in: ClickHouse checking a password that
// clickgate itself issued in http_auth mode.
func logTicket(log *audit.Log, r *http.Request, user string, err error) {
	rec := audit.Record{Type: audit.LoginSuccess, User: user, Processor: "clickgate-ticket", Interface: audit.InterfaceAuthEndpoint}
	rec.ClientAddress, rec.ClientPort = authn.SplitAddr(r.RemoteAddr)
	rec.HTTPUserAgent = r.UserAgent()
	if err != nil {
		rec.Type, rec.FailureReason = audit.LoginFailure, err.Error()
	}
	log.Write(rec)
}
