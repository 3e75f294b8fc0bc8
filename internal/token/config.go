package token

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/clickgate/clickgate/internal/problems"
)

// Config configures one token processor (one entry of token_processors),
// like ClickHouse's <token_processors> entries. Its keys are shared by the
// types; each type says which it uses, their defaults and their checks.
type Config struct {
	Type string `yaml:"type"`
	// Issuer is the expected iss; for oidc also the discovery base.
	Issuer string `yaml:"issuer"`

	JWKSURI  string `yaml:"jwks_uri"`
	JWKSFile string `yaml:"jwks_file"`
	// Keys holds inline PEM public keys or a JWK set (JSON).
	Keys string `yaml:"keys"`
	// SharedSecret enables HS256/384/512; without it HMAC is refused.
	SharedSecret string `yaml:"shared_secret"`

	UserinfoURL      string `yaml:"userinfo_url"`
	IntrospectionURL string `yaml:"introspection_url"`
	// TokeninfoURL is Google's tokeninfo endpoint (overridable for tests).
	TokeninfoURL string `yaml:"tokeninfo_url"`
	// APIURL is the GitHub REST API base (GitHub Enterprise: https://HOST/api/v3).
	APIURL string `yaml:"api_url"`
	// HostedDomain restricts Google accounts to one Workspace domain (hd).
	HostedDomain string `yaml:"hosted_domain"`
	// TokensFile lists a static processor's tokens, by their SHA-256.
	TokensFile string `yaml:"tokens_file"`

	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// TokenURL is the token endpoint for exchange mode (oidc: discovered).
	TokenURL string `yaml:"token_url"`

	Audiences      []string       `yaml:"audiences"`
	Algorithms     []string       `yaml:"algorithms"`
	RequiredClaims map[string]any `yaml:"required_claims"`
	UsernameClaim  string         `yaml:"username_claim"`
	GroupsClaim    string         `yaml:"groups_claim"`

	Leeway   time.Duration `yaml:"leeway"`
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// MaxKeyStaleness bounds how long keys fetched before stay in use while
	// the IdP's JWKS endpoint is unreachable.
	MaxKeyStaleness time.Duration `yaml:"max_key_staleness"`
}

// Processor types, by token_processors.*.type.
const (
	TypeJWT    = "jwt"
	TypeOIDC   = "oidc"
	TypeOpaque = "opaque"
	TypeGitHub = "github"
	TypeGoogle = "google"
	TypeStatic = "static"
)

// types are the processor types. Adding one is a file with its Type and
// one line here (and its own keys in Config, if it needs new ones).
var types = map[string]Type{
	TypeJWT:    jwtType,
	TypeOIDC:   oidcType,
	TypeOpaque: opaqueType,
	TypeGitHub: githubType,
	TypeGoogle: googleType,
	TypeStatic: staticType,
}

// A Type is one kind of token processor: its defaults and checks, how to
// build it, and what it tells operators and the rest of clickgate about
// itself.
type Type struct {
	// Defaults fills in the type's own defaults, before the common ones.
	Defaults func(cfg *Config)
	// Validate reports what is wrong with the type's keys under path; New
	// is only ever given a configuration it passed.
	Validate func(cfg *Config, path string, p *problems.List)
	New      func(name string, cfg *Config, opt Options) (Processor, error)
	// Describe says how the type checks tokens, for check-config: the
	// lines that differ by type (the common ones are check-config's).
	Describe func(cfg *Config) []string
	// ChecksAudience reports whether tokens carry an aud that the
	// processor compares with cfg.Audiences (GitHub's carry none).
	ChecksAudience func(cfg *Config) bool
}

// Defaults that apply when a key is absent.
const (
	DefaultLeeway          = 30 * time.Second
	DefaultCacheTTL        = 5 * time.Minute
	DefaultMaxKeyStaleness = 24 * time.Hour
)

// AsymmetricAlgorithms are accepted by default for signed JWTs.
var AsymmetricAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// HMACAlgorithms need an explicit shared_secret.
var HMACAlgorithms = []string{"HS256", "HS384", "HS512"}

// ApplyDefaults fills in what the keys default to: the type's own, then
// the common ones. Loading a configuration file calls it.
func (c *Config) ApplyDefaults() {
	if t, ok := types[c.Type]; ok && t.Defaults != nil {
		t.Defaults(c)
	}
	if c.UsernameClaim == "" {
		c.UsernameClaim = "sub"
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.MaxKeyStaleness == 0 {
		c.MaxKeyStaleness = DefaultMaxKeyStaleness
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = slices.Clone(AsymmetricAlgorithms)
		if c.SharedSecret != "" {
			c.Algorithms = append(c.Algorithms, HMACAlgorithms...)
		}
	}
}

// Validate reports what is wrong with c, each problem under path (the
// key's place in the file, e.g. token_processors.corp), after
// ApplyDefaults.
func (c *Config) Validate(path string, p *problems.List) {
	t, ok := types[c.Type]
	switch {
	case c.Type == "":
		p.Add(path+".type", "missing; one of %s", typeNames())
		return
	case !ok:
		p.Add(path+".type", "%q is not a processor type; use one of %s", c.Type, typeNames())
		return
	}
	t.Validate(c, path, p)
	for i, alg := range c.Algorithms {
		ap := fmt.Sprintf("%s.algorithms[%d]", path, i)
		switch {
		case strings.EqualFold(alg, "none"):
			p.Add(ap, `"none" is never allowed: unsigned tokens prove nothing`)
		case slices.Contains(HMACAlgorithms, alg):
			if c.SharedSecret == "" {
				p.Add(ap, "%s needs shared_secret; without it HMAC would let anyone holding a public key forge tokens", alg)
			}
		case !slices.Contains(AsymmetricAlgorithms, alg):
			p.Add(ap, "%q is not supported; use some of %s", alg, strings.Join(append(slices.Clone(AsymmetricAlgorithms), HMACAlgorithms...), ", "))
		}
	}
	if c.SharedSecret != "" && len(c.SharedSecret) < 32 {
		p.Add(path+".shared_secret", "is shorter than 32 bytes; use a long random secret")
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		p.Add(path+".leeway", "%s is outside 0s…5m", c.Leeway)
	}
	if c.CacheTTL < 0 {
		p.Add(path+".cache_ttl", "must not be negative")
	}
	validateRequiredClaims(c.RequiredClaims, path, p)
}

func validateRequiredClaims(claims map[string]any, path string, p *problems.List) {
	scalar := func(v any) bool {
		switch v.(type) {
		case string, bool, int, float64:
			return true
		}
		return false
	}
	names := make([]string, 0, len(claims))
	for k := range claims {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		switch val := claims[k].(type) {
		case []any:
			for _, e := range val {
				if !scalar(e) {
					p.Add(path+".required_claims."+k, "list items must be strings, numbers or booleans")
				}
			}
		default:
			if !scalar(val) {
				p.Add(path+".required_claims."+k, "must be a string, number, boolean or a list of those")
			}
		}
	}
}

// validateAudiences is the check of the types whose tokens name an aud.
func validateAudiences(path string, auds []string, p *problems.List) {
	if len(auds) == 0 {
		p.Add(path+".audiences", "missing; a token must name clickgate or ClickHouse in aud, or any token the IdP issued to any app would be accepted")
	}
}

// validateIntrospection is the check of the types that may introspect.
func validateIntrospection(c *Config, path string, p *problems.List) {
	if c.IntrospectionURL != "" && (c.ClientID == "" || c.ClientSecret == "") {
		p.Add(path, "introspection needs client_id and client_secret")
	}
}

// readable reports a file that cannot be read under path, so that a
// missing key file is found when the configuration is checked, with the
// rest, not later when the processor is built.
func readable(path, file string, p *problems.List) []byte {
	data, err := os.ReadFile(file)
	if err != nil {
		p.Add(path, "%v", err)
		return nil
	}
	return data
}

func typeNames() string {
	names := make([]string, 0, len(types))
	for n := range types {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
