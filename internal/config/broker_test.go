package config

import (
	"strings"
	"testing"
)

const brokerBase = `
server: {public_url: http://127.0.0.1:8443}
token_processors:
  dev: {type: oidc, issuer: http://127.0.0.1:8443/idp, audiences: [clickhouse], username_claim: email}
  corp: {type: oidc, issuer: https://idp.example, audiences: [clickhouse]}
  keys: {type: jwt, issuer: https://jwt.example, jwks_uri: https://jwt.example/jwks, audiences: [clickhouse]}
dev_idp: {enabled: true, users: [{username: a, password: b, email: a@example.com}]}
clickhouse: {url: http://127.0.0.1:8123, mode: service, user: svc}
`

func TestBrokerConfig(t *testing.T) {
	for _, tc := range []struct {
		name, broker string
		problem      string // "" means valid
	}{
		{"dev IdP upstream", `{enabled: true, upstream: dev}`, ""},
		{"seal key base64", `{enabled: true, upstream: dev, seal_key: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}`, ""},
		{"seal key hex", `{enabled: true, upstream: dev, seal_key: "3031323334353637383961626364656630313233343536373839616263646566"}`, ""},
		{"no upstream", `{enabled: true}`, "broker.upstream: missing"},
		{"unknown upstream", `{enabled: true, upstream: nope}`, `"nope" is not a processor`},
		{"jwt upstream", `{enabled: true, upstream: keys}`, "oidc, github or google"},
		{"no client_id", `{enabled: true, upstream: corp}`, "token_processors.corp.client_id: missing; the broker signs people in as this client: register http://127.0.0.1:8443/oauth/callback"},
		{"short seal key", `{enabled: true, upstream: dev, seal_key: "c2hvcnQ="}`, "openssl rand -base64 32"},
		{"ttl too short", `{enabled: true, upstream: dev, access_token_ttl: 1s}`, "broker.access_token_ttl"},
		{"refresh shorter than access", `{enabled: true, upstream: dev, access_token_ttl: 1h, refresh_token_ttl: 10m}`, "broker.refresh_token_ttl"},
		{"client without redirects", `{enabled: true, upstream: dev, clients: [{client_id: c}]}`, "broker.clients[0].redirect_uris: missing"},
		{"client id is a URL", `{enabled: true, upstream: dev, clients: [{client_id: "https://x.example/c.json", redirect_uris: [https://x.example/cb]}]}`, "Client ID Metadata Documents"},
		{"clickhouse store", `{enabled: true, upstream: dev, store: clickhouse}`, ""},
		{"unknown store", `{enabled: true, upstream: dev, store: redis}`, `"redis" is not a store`},
		{"client redirect with fragment", `{enabled: true, upstream: dev, clients: [{client_id: c, redirect_uris: ["https://x.example/cb#f"]}]}`, "without fragment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(brokerBase + "broker: " + tc.broker + "\n"))
			switch {
			case tc.problem == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), tc.problem)):
				t.Fatalf("error %v, want one containing %q", err, tc.problem)
			}
		})
	}
}

func TestBrokerNeedsMCP(t *testing.T) {
	_, err := Parse([]byte(brokerBase + "mcp: {enabled: false}\nbroker: {enabled: true, upstream: dev}\n"))
	if err == nil || !strings.Contains(err.Error(), "needs a clickhouse section and mcp.enabled") {
		t.Fatalf("got %v", err)
	}
}

func TestBrokerClickHouseStoreNeedsAUser(t *testing.T) {
	base := strings.Replace(brokerBase, "mode: service, user: svc", "mode: mapped, accounts: [{role: r, user: u}]", 1)
	_, err := Parse([]byte(base + "broker: {enabled: true, upstream: dev, store: clickhouse}\n"))
	if err == nil || !strings.Contains(err.Error(), "broker.store: clickhouse keeps the broker's state through clickhouse.url as clickhouse.user") {
		t.Fatalf("got %v", err)
	}
}

func TestBrokerRefusesExchangeMode(t *testing.T) {
	base := strings.Replace(brokerBase, "mode: service, user: svc", "mode: exchange, audience: clickhouse", 1)
	_, err := Parse([]byte(base + "broker: {enabled: true, upstream: dev}\n"))
	if err == nil || !strings.Contains(err.Error(), "exchange mode trades") {
		t.Fatalf("got %v", err)
	}
}

func TestBrokerDefaults(t *testing.T) {
	cfg, err := Parse([]byte(brokerBase + "broker: {enabled: true, upstream: dev}\n"))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Broker
	if b.AccessTokenTTL != DefaultBrokerAccessTokenTTL || b.RefreshTokenTTL != DefaultBrokerRefreshTokenTTL ||
		!strings.HasSuffix(b.KeyFile, "broker-keys.json") || !strings.HasSuffix(b.StoreFile, "broker-state.json") ||
		strings.Join(b.UpstreamScopes, " ") != "openid email profile offline_access" || !cfg.BrokerUpstreamIsDevIdP() {
		t.Fatalf("defaults %+v", b)
	}
	if p := cfg.BrokerProcessorConfig(); p.Issuer != "http://127.0.0.1:8443" || p.Audiences[0] != "http://127.0.0.1:8443/mcp" || p.UsernameClaim != "username" {
		t.Fatalf("processor %+v", p)
	}
}
