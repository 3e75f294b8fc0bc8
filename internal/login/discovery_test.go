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

// Discover holds the provider to one issuer, exactly (the rule of
// oidcdiscovery): the one given, or — when the given one differs only by
// a trailing slash, a typing matter at the command line — the provider's
// own spelling; an impostor is refused, saying what was expected.
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
		{srv.URL + "/tenant/", srv.URL + "/tenant"},
		{srv.URL + "/tenant", srv.URL + "/tenant/"},
	} {
		named = tc.named
		m, err := Discover(ctx, srv.Client(), tc.given)
		if err != nil || m.Issuer != tc.named {
			t.Errorf("issuer %q named %q: %v, %+v", tc.given, tc.named, err, m)
		}
	}
	for _, tc := range []struct{ given, named string }{
		{srv.URL + "/tenant", "https://impostor.example/tenant"},
		{srv.URL + "/tenant", srv.URL + "/tenant/x"},
		{srv.URL + "/tenant", srv.URL + "/"},
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
