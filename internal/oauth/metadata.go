package oauth

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Broker endpoint paths, relative to the issuer (public_url).
const (
	PathAuthorize     = "/oauth/authorize"
	PathToken         = "/oauth/token"
	PathRegister      = "/oauth/register"
	PathCallback      = "/oauth/callback"
	PathJWKS          = "/oauth/jwks"
	PathASMetadata    = "/.well-known/oauth-authorization-server"
	PathOIDCDiscovery = "/.well-known/openid-configuration"
)

// ServerMetadata is the RFC 8414 authorization server metadata, also
// served as OpenID discovery.
type ServerMetadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	RegistrationEndpoint                       string   `json:"registration_endpoint"`
	JWKSURI                                    string   `json:"jwks_uri"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	ScopesSupported                            []string `json:"scopes_supported,omitempty"`
	SubjectTypesSupported                      []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported           []string `json:"id_token_signing_alg_values_supported"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

// MetadataOptions adjusts the metadata document.
type MetadataOptions struct {
	Scopes      []string // scopes_supported; omitted when empty
	SigningAlgs []string // id_token_signing_alg_values_supported; default ES256
}

// NewServerMetadata builds the metadata for issuer (public_url; a
// trailing slash is dropped).
func NewServerMetadata(issuer string, opts MetadataOptions) ServerMetadata {
	issuer = strings.TrimRight(issuer, "/")
	algs := opts.SigningAlgs
	if len(algs) == 0 {
		algs = []string{"ES256"}
	}
	return ServerMetadata{
		Issuer:                                     issuer,
		AuthorizationEndpoint:                      issuer + PathAuthorize,
		TokenEndpoint:                              issuer + PathToken,
		RegistrationEndpoint:                       issuer + PathRegister,
		JWKSURI:                                    issuer + PathJWKS,
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{"authorization_code", "refresh_token"},
		TokenEndpointAuthMethodsSupported:          []string{"none", "client_secret_basic", "client_secret_post"},
		CodeChallengeMethodsSupported:              []string{"S256"},
		ScopesSupported:                            opts.Scopes,
		SubjectTypesSupported:                      []string{"public"},
		IDTokenSigningAlgValuesSupported:           algs,
		ClientIDMetadataDocumentSupported:          true,
		AuthorizationResponseIssParameterSupported: true,
	}
}

// MetadataHandler serves md as JSON at PathASMetadata and
// PathOIDCDiscovery; other paths get 404.
func MetadataHandler(md ServerMetadata) http.Handler {
	body, err := json.Marshal(md)
	if err != nil {
		panic(err) // only strings, slices and bools
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != PathASMetadata && r.URL.Path != PathOIDCDiscovery {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write(body)
	})
}
