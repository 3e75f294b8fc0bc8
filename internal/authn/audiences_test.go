package authn

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/token"
)

const (
	testPublicURL = "https://clickgate.test"
	testResource  = testPublicURL + "/mcp"
	testAltMCP    = "https://mcp.example/alt" // an mcp.audiences entry
)

// audienceConfig has one processor of each kind: corp (ClickHouse and the
// extra MCP audience), mcponly (the MCP resource only), gh (GitHub: no
// aud), info (opaque by userinfo: no aud), gg (Google: its client id), and
// the broker, whose upstream is corp; mode is the clickhouse section.
func audienceConfig(t *testing.T, mode string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
server: {public_url: %s}
token_processors:
  corp: {type: oidc, issuer: https://idp.test, client_id: cg, client_secret: s, audiences: [clickhouse, %s]}
  mcponly: {type: jwt, issuer: https://mcp-idp.test, jwks_uri: https://mcp-idp.test/jwks, audiences: [%s]}
  gh: {type: github}
  info: {type: opaque, userinfo_url: https://idp.test/userinfo}
  gg: {type: google, client_id: gg-client}
directory: {processors: [corp, mcponly, gh, info, gg]}
mcp: {audiences: [%s]}
clickhouse:
  url: http://127.0.0.1:8123
%s
broker: {enabled: true, upstream: corp}
`, testPublicURL, testAltMCP, testResource, testAltMCP, mode)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const (
	mappedMode = "  mode: mapped\n  accounts: [{role: r, user: u, password: p}]"
	bearerMode = "  mode: bearer\n  audience: clickhouse-prod"
)

func TestClickHouseAudiences(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		want       map[string]Audiences
	}{
		{"mapped", mappedMode, map[string]Audiences{
			"corp":                 {ClickHouse: []string{"clickhouse"}},
			"mcponly":              {},
			"gh":                   {Any: true},
			"info":                 {Any: true},
			"gg":                   {ClickHouse: []string{"gg-client"}},
			config.BrokerProcessor: {},
		}},
		{"bearer", bearerMode, map[string]Audiences{
			"corp":                 {ClickHouse: []string{"clickhouse"}},
			"mcponly":              {},
			"gh":                   {Any: true},
			"info":                 {Any: true},
			"gg":                   {ClickHouse: []string{"gg-client"}},
			config.BrokerProcessor: {ClickHouse: []string{"clickhouse-prod"}},
		}},
		// ClickHouse's audience named like an MCP audience admits nothing.
		{"bearer for the MCP resource", "  mode: bearer\n  audience: " + testResource, map[string]Audiences{
			"corp":                 {ClickHouse: []string{"clickhouse"}},
			"mcponly":              {},
			"gh":                   {Any: true},
			"info":                 {Any: true},
			"gg":                   {ClickHouse: []string{"gg-client"}},
			config.BrokerProcessor: {},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ClickHouseAudiences(audienceConfig(t, tc.mode))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestAdmitToClickHouse(t *testing.T) {
	mapped := &Authenticator{}
	mapped.AdmitToClickHouse(ClickHouseAudiences(audienceConfig(t, mappedMode)))
	bearer := &Authenticator{}
	bearer.AdmitToClickHouse(ClickHouseAudiences(audienceConfig(t, bearerMode)))
	for _, tc := range []struct {
		name      string
		a         *Authenticator
		processor string
		aud       []string
		refusal   string // empty: admitted
	}{
		// Refused: MCP audiences never admit a token, whatever else aud holds.
		{"MCP resource and Keycloak's account", mapped, "corp", []string{testResource, "account"}, "aud must include one of clickhouse"},
		{"MCP resource and Auth0's userinfo", mapped, "corp", []string{testResource, "https://tenant.example/userinfo"}, "aud must include one of clickhouse"},
		{"mcp.audiences entry and another", mapped, "corp", []string{testAltMCP, "other"}, "aud must include one of clickhouse"},
		{"MCP resource only", mapped, "corp", []string{testResource}, "aud must include one of clickhouse"},
		{"no aud", mapped, "corp", nil, "aud must include one of clickhouse"},
		{"processor with the MCP resource only", mapped, "mcponly", []string{testResource, "clickhouse"}, "MCP endpoint only"},
		{"broker token outside bearer mode", mapped, config.BrokerProcessor, []string{testResource}, "MCP endpoint only"},
		{"broker token without ClickHouse's audience", bearer, config.BrokerProcessor, []string{testResource}, "aud must include one of clickhouse-prod"},
		{"processor the rules do not know", mapped, "elsewhere", []string{"clickhouse"}, "MCP endpoint only"},
		{"no rules at all", &Authenticator{}, "corp", []string{"clickhouse"}, "MCP endpoint only"},
		// Admitted.
		{"ClickHouse", mapped, "corp", []string{"clickhouse"}, ""},
		{"ClickHouse and the MCP resource", mapped, "corp", []string{"clickhouse", testResource}, ""},
		{"MCP resource and ClickHouse", mapped, "corp", []string{testResource, "clickhouse"}, ""},
		{"GitHub (no aud)", mapped, "gh", nil, ""},
		{"opaque by userinfo (no aud)", mapped, "info", nil, ""},
		{"Google", mapped, "gg", []string{"gg-client"}, ""},
		{"broker token in bearer mode", bearer, config.BrokerProcessor, []string{testResource, "clickhouse-prod"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.a.admitToClickHouse(&identity.Identity{Processor: tc.processor, Audience: tc.aud})
			if tc.refusal == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("admitted")
			}
			if !errors.Is(err, ErrNotForClickHouse) || Reason(err) != token.ReasonAudience || Status(err) != 401 ||
				!strings.HasPrefix(err.Error(), "token: "+tc.processor+": ") || !strings.Contains(err.Error(), tc.refusal) {
				t.Fatalf("refusal %q (reason %s, status %d); want a 401 wrong_audience naming %s and %q", err, Reason(err), Status(err), tc.processor, tc.refusal)
			}
		})
	}
}

// Every interface but MCP, whoami and the broker's upstream sign-in needs
// a ClickHouse audience, also those added later.
func TestReachesClickHouse(t *testing.T) {
	var reach []string
	for _, iface := range []string{audit.InterfaceGateway, audit.InterfaceAuthEndpoint, "native", audit.InterfaceMCP, audit.InterfaceWhoami, audit.InterfaceBroker} {
		if reachesClickHouse(iface) {
			reach = append(reach, iface)
		}
	}
	if want := []string{audit.InterfaceGateway, audit.InterfaceAuthEndpoint, "native"}; !slices.Equal(reach, want) {
		t.Fatalf("interfaces needing a ClickHouse audience: %v, want %v", reach, want)
	}
}
