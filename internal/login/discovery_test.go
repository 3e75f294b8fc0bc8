package login

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Discover holds the provider to the issuer as given, trailing slash
// included (the rule of oidcdiscovery), and says what it expected.
func TestDiscoverIssuerRule(t *testing.T) {
	var named string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/tenant/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"issuer": named, "token_endpoint": "https://idp.example/token"})
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, tc := range []struct{ given, named string }{
		{srv.URL + "/tenant", srv.URL + "/tenant"},
		{srv.URL + "/tenant/", srv.URL + "/tenant/"},
	} {
		named = tc.named
		if _, err := Discover(ctx, srv.Client(), tc.given); err != nil {
			t.Errorf("issuer %q named %q: %v", tc.given, tc.named, err)
		}
	}
	for _, tc := range []struct{ given, named string }{
		{srv.URL + "/tenant/", srv.URL + "/tenant"},
		{srv.URL + "/tenant", srv.URL + "/tenant/"},
		{srv.URL + "/tenant", "https://impostor.example/tenant"},
	} {
		named = tc.named
		_, err := Discover(ctx, srv.Client(), tc.given)
		var de *DiscoveryError
		if !errors.As(err, &de) || !strings.Contains(err.Error(), "names issuer") {
			t.Errorf("issuer %q named %q: %v, want a refusal", tc.given, tc.named, err)
		}
	}
	_, err := Discover(ctx, srv.Client(), srv.URL+"/elsewhere")
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), "an OpenID provider's issuer URL?") {
		t.Errorf("no document: %v", err)
	}
}
