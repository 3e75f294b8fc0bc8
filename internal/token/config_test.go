package token_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/problems"
	"github.com/clickgate/clickgate/internal/token"
)

// validate applies the defaults to cfg and returns what Validate finds.
func validate(cfg *token.Config) []string {
	cfg.ApplyDefaults()
	var p problems.List
	cfg.Validate("token_processors.p", &p)
	return p.Items()
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	notKeys := filepath.Join(dir, "notkeys.json")
	if err := os.WriteFile(notKeys, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	const secret = "0123456789abcdef0123456789abcdef"
	jwt := func(c token.Config) *token.Config {
		c.Type, c.Issuer, c.Audiences = token.TypeJWT, "https://idp.test", []string{"clickhouse"}
		if c.JWKSURI == "" && c.JWKSFile == "" && c.Keys == "" && c.SharedSecret == "" {
			c.JWKSURI = "https://idp.test/jwks"
		}
		return &c
	}
	for _, tc := range []struct {
		name string
		cfg  *token.Config
		want []string // substrings, one per expected problem; none: valid
	}{
		{"jwt", jwt(token.Config{}), nil},
		{"no type", &token.Config{}, []string{"token_processors.p.type: missing; one of github, google, jwt, oidc, opaque, static"}},
		{"unknown type", &token.Config{Type: "saml"}, []string{`"saml" is not a processor type`}},
		{"alg none", jwt(token.Config{Algorithms: []string{"RS256", "none"}}), []string{"algorithms[1]: \"none\" is never allowed"}},
		{"HS256 without secret", jwt(token.Config{Algorithms: []string{"HS256"}}), []string{"HS256 needs shared_secret"}},
		{"HS256 with secret", jwt(token.Config{SharedSecret: secret}), nil},
		{"short shared secret", jwt(token.Config{SharedSecret: "short"}), []string{"shorter than 32 bytes"}},
		{"unknown algorithm", jwt(token.Config{Algorithms: []string{"RS1"}}), []string{`"RS1" is not supported`}},
		{"leeway too long", jwt(token.Config{Leeway: 6 * 60 * 1e9}), []string{"leeway: 6m0s is outside"}},
		{"negative cache_ttl", jwt(token.Config{CacheTTL: -1}), []string{"cache_ttl: must not be negative"}},
		{"required claim of a map", jwt(token.Config{RequiredClaims: map[string]any{"x": map[string]any{}}}), []string{"required_claims.x"}},
		{"jwt without keys", &token.Config{Type: token.TypeJWT, Issuer: "i", Audiences: []string{"a"}}, []string{"needs its keys"}},
		{"two key sources", jwt(token.Config{JWKSURI: "https://idp.test/jwks", Keys: "k"}), []string{"only one of"}},
		{"jwks_uri not a URL", jwt(token.Config{JWKSURI: "idp.test/jwks"}), []string{"jwks_uri: \"idp.test/jwks\" is not an http(s) URL"}},
		{"jwks_file missing", jwt(token.Config{JWKSFile: filepath.Join(dir, "missing.json")}), []string{"jwks_file: open "}},
		{"jwks_file not keys", jwt(token.Config{JWKSFile: notKeys}), []string{"jwks_file: no PEM public key or JWK set found"}},
		{"inline keys not keys", jwt(token.Config{Keys: "hello"}), []string{"keys: no PEM public key"}},
		{"jwt without issuer and audiences", &token.Config{Type: token.TypeJWT, JWKSURI: "https://idp.test/jwks"}, []string{"issuer: missing", "audiences: missing"}},
		{"oidc without issuer", &token.Config{Type: token.TypeOIDC, Audiences: []string{"x"}}, []string{"issuer: missing"}},
		{"oidc audience from client_id", &token.Config{Type: token.TypeOIDC, Issuer: "https://idp.test", ClientID: "app"}, nil},
		{"oidc introspection half set", &token.Config{Type: token.TypeOIDC, Issuer: "https://idp.test", Audiences: []string{"x"}, IntrospectionURL: "https://idp.test/i"}, []string{"introspection needs client_id and client_secret"}},
		{"opaque without endpoints", &token.Config{Type: token.TypeOpaque}, []string{"introspection_url and/or userinfo_url"}},
		{"opaque userinfo not a URL", &token.Config{Type: token.TypeOpaque, UserinfoURL: "nope"}, []string{"userinfo_url: \"nope\" is not"}},
		{"github", &token.Config{Type: token.TypeGitHub}, nil},
		{"github half the client credentials", &token.Config{Type: token.TypeGitHub, ClientID: "abc"}, []string{"set both client_id and client_secret"}},
		{"github api_url not a URL", &token.Config{Type: token.TypeGitHub, APIURL: "api.github.com"}, []string{"api_url"}},
		{"google without client_id", &token.Config{Type: token.TypeGoogle}, []string{"client_id: missing"}},
		{"google", &token.Config{Type: token.TypeGoogle, ClientID: "app.apps.googleusercontent.com"}, nil},
		{"static without file", &token.Config{Type: token.TypeStatic}, []string{"tokens_file: missing"}},
		{"static file missing", &token.Config{Type: token.TypeStatic, TokensFile: filepath.Join(dir, "none")}, []string{"tokens_file: open "}},
		{"static file not a list", &token.Config{Type: token.TypeStatic, TokensFile: notKeys}, []string{"line 1: the first field must be sha256:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := validate(tc.cfg)
			if len(got) != len(tc.want) {
				t.Fatalf("problems %q, want %d like %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %q does not say %q", got[i], w)
				}
				if !strings.HasPrefix(got[i], "token_processors.p") {
					t.Errorf("problem %q is not under the processor's path", got[i])
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		cfg       token.Config
		username  string
		audiences []string
		check     func(c *token.Config) bool
	}{
		{token.Config{Type: token.TypeJWT}, "sub", nil, func(c *token.Config) bool {
			return c.Leeway == token.DefaultLeeway && c.CacheTTL == token.DefaultCacheTTL && !slices.Contains(c.Algorithms, "HS256")
		}},
		{token.Config{Type: token.TypeJWT, SharedSecret: "s"}, "sub", nil, func(c *token.Config) bool { return slices.Contains(c.Algorithms, "HS256") }},
		{token.Config{Type: token.TypeOIDC, ClientID: "app"}, "sub", []string{"app"}, nil},
		{token.Config{Type: token.TypeOIDC, ClientID: "app", Audiences: []string{"ch"}}, "sub", []string{"ch"}, nil},
		{token.Config{Type: token.TypeGitHub, APIURL: "https://ghe.test/api/v3/"}, "login", nil, func(c *token.Config) bool { return c.APIURL == "https://ghe.test/api/v3" }},
		{token.Config{Type: token.TypeGitHub}, "login", nil, func(c *token.Config) bool { return c.APIURL == token.DefaultGitHubAPI }},
		{token.Config{Type: token.TypeGoogle, ClientID: "app"}, "email", []string{"app"}, func(c *token.Config) bool {
			return c.UserinfoURL == token.DefaultGoogleUserinfo && c.TokeninfoURL == token.DefaultGoogleTokeninfo
		}},
		{token.Config{Type: token.TypeGoogle, UsernameClaim: "sub"}, "sub", nil, nil},
	} {
		c := tc.cfg
		c.ApplyDefaults()
		if c.UsernameClaim != tc.username || !slices.Equal(c.Audiences, tc.audiences) || c.GroupsClaim != "groups" || (tc.check != nil && !tc.check(&c)) {
			t.Errorf("%+v: defaults gave %+v", tc.cfg, c)
		}
	}
}
