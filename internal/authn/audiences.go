package authn

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/token"
)

// The audience rule. A processor accepts a token when its aud names one of
// the processor's audiences, and at /mcp also the MCP resource
// (public_url + /mcp) or an mcp.audiences entry. Those MCP audiences never
// admit a token to ClickHouse: on the interfaces that act in ClickHouse
// with the token's authority (the gateway, /clickhouse/auth, the native
// listener) its aud must name an audience configured for ClickHouse on the
// processor that proved it, whatever else aud holds.

// Audiences is what admits one processor's tokens to ClickHouse.
type Audiences struct {
	// Any: the processor checks no audience, so its own checks admit its
	// tokens (GitHub's carry no aud, its client_id check stands for one;
	// opaque tokens checked without introspection).
	Any bool
	// ClickHouse: a token's aud must name one of these. None (and not Any)
	// means none of the processor's tokens reach ClickHouse: they are for
	// the MCP endpoint only.
	ClickHouse []string
}

// ClickHouseAudiences computes from cfg, per processor, the audiences that
// admit its tokens to ClickHouse: the processor's audiences minus the MCP
// resource and mcp.audiences. The broker's own tokens name the MCP
// resource, plus clickhouse.audience in bearer mode only (as
// internal/server mints them): only that one admits them.
func ClickHouseAudiences(cfg *config.Config) map[string]Audiences {
	mcp := append([]string{cfg.MCPResource()}, cfg.MCP.Audiences...)
	forClickHouse := func(auds []string) []string {
		var out []string
		for _, a := range auds {
			if a != "" && !slices.Contains(mcp, a) && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
		return out
	}
	m := make(map[string]Audiences, len(cfg.TokenProcessors)+1)
	for name, p := range cfg.TokenProcessors {
		switch {
		case p == nil:
		case !token.ChecksAudience(p):
			m[name] = Audiences{Any: true}
		default:
			m[name] = Audiences{ClickHouse: forClickHouse(p.Audiences)}
		}
	}
	if cfg.Broker.Enabled {
		var auds []string
		if ch := cfg.ClickHouse; ch != nil && ch.Mode == config.ModeBearer {
			auds = []string{ch.Audience}
		}
		m[config.BrokerProcessor] = Audiences{ClickHouse: forClickHouse(auds)}
	}
	return m
}

// AdmitToClickHouse sets, per processor name, which tokens reach
// ClickHouse; a processor missing from admit has none of its tokens
// admitted. Call it once, before serving.
func (a *Authenticator) AdmitToClickHouse(admit map[string]Audiences) {
	a.clickhouse = maps.Clone(admit)
}

// ErrNotForClickHouse reports a token presented to ClickHouse whose
// audience is not one configured for ClickHouse (an MCP token, say).
var ErrNotForClickHouse = errors.New("the token's audience is not for ClickHouse")

// reachesClickHouse reports whether a token presented on iface acts in
// ClickHouse with its holder's authority. The exceptions: MCP checks its
// own audiences (internal/mcp), whoami only reports, and the broker's
// upstream sign-in proves a person with a token the broker itself obtained
// from the IdP (it issues MCP tokens, never passes that one on).
func reachesClickHouse(iface string) bool {
	switch iface {
	case audit.InterfaceMCP, audit.InterfaceWhoami, audit.InterfaceBroker:
		return false
	}
	return true
}

// admitToClickHouse refuses id unless its aud names an audience
// configured for ClickHouse on the processor that proved it.
func (a *Authenticator) admitToClickHouse(id *identity.Identity) error {
	rule := a.clickhouse[id.Processor]
	switch {
	case rule.Any:
		return nil
	case len(rule.ClickHouse) == 0:
		return fmt.Errorf("token: %s: %w: this processor's tokens are for the MCP endpoint only (none of its audiences is configured for ClickHouse); use the token at /mcp, or one issued for ClickHouse", id.Processor, ErrNotForClickHouse)
	case slices.ContainsFunc(id.Audience, func(aud string) bool { return slices.Contains(rule.ClickHouse, aud) }):
		return nil
	}
	return fmt.Errorf("token: %s: %w: aud must include one of %s (the MCP resource and mcp.audiences admit a token at /mcp only)", id.Processor, ErrNotForClickHouse, strings.Join(rule.ClickHouse, ", "))
}
