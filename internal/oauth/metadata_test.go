package oauth

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

func TestMetadataHandler(t *testing.T) {
	h := MetadataHandler(NewServerMetadata("https://cg.example.com/", MetadataOptions{}))
	for _, path := range []string{PathASMetadata, PathOIDCDiscovery} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Header().Get("Content-Type"))
		}
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"issuer":                                         "https://cg.example.com",
			"authorization_endpoint":                         "https://cg.example.com/oauth/authorize",
			"token_endpoint":                                 "https://cg.example.com/oauth/token",
			"registration_endpoint":                          "https://cg.example.com/oauth/register",
			"jwks_uri":                                       "https://cg.example.com/oauth/jwks",
			"code_challenge_methods_supported":               []any{"S256"},
			"grant_types_supported":                          []any{"authorization_code", "refresh_token"},
			"token_endpoint_auth_methods_supported":          []any{"none", "client_secret_basic", "client_secret_post"},
			"response_types_supported":                       []any{"code"},
			"client_id_metadata_document_supported":          true,
			"authorization_response_iss_parameter_supported": true,
		}
		for k, v := range want {
			if !reflect.DeepEqual(m[k], v) {
				t.Errorf("%s: %s = %#v, want %#v", path, k, m[k], v)
			}
		}
		if _, ok := m["scopes_supported"]; ok {
			t.Errorf("scopes_supported present without scopes")
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/other", nil))
	if rec.Code != 404 {
		t.Errorf("other path: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PathASMetadata, nil))
	if rec.Code != 405 {
		t.Errorf("POST: %d", rec.Code)
	}
}
