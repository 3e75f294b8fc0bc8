package oauth

import (
	"encoding/json"
	"net/http"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
)

// record writes one broker event to the audit trail: who (p, when known),
// for which client, and why (replays). Never a token, code or secret.
func (b *Broker) record(r *http.Request, typ string, p person, clientID, reason string, details map[string]any) {
	if b.opts.Audit == nil {
		return
	}
	rec := audit.Record{Type: typ, Interface: audit.InterfaceBroker,
		User: p.Username, Subject: p.Subject, Roles: p.Roles,
		ClientID: clip(clientID, 200), FailureReason: reason, HTTPUserAgent: r.UserAgent()}
	rec.ClientAddress, rec.ClientPort = authn.SplitAddr(r.RemoteAddr)
	if len(details) > 0 {
		js, _ := json.Marshal(details)
		rec.Arguments = string(js)
	}
	b.opts.Audit.Write(rec)
}
