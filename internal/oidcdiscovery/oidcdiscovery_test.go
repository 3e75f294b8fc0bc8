package oidcdiscovery

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestURL(t *testing.T) {
	for issuer, want := range map[string]string{
		"https://idp.example":                "https://idp.example/.well-known/openid-configuration",
		"https://idp.example/":               "https://idp.example/.well-known/openid-configuration",
		"https://idp.example/realms/corp":    "https://idp.example/realms/corp/.well-known/openid-configuration",
		"https://idp.example/realms/corp/":   "https://idp.example/realms/corp/.well-known/openid-configuration",
		"http://127.0.0.1:8443/idp":          "http://127.0.0.1:8443/idp/.well-known/openid-configuration",
		"https://tenant.auth0.example.com/":  "https://tenant.auth0.example.com/.well-known/openid-configuration",
		"https://login.example/tenant/v2.0/": "https://login.example/tenant/v2.0/.well-known/openid-configuration",
	} {
		if got := URL(issuer); got != want {
			t.Errorf("URL(%q) = %q, want %q", issuer, got, want)
		}
	}
}

// The issuer rule: equal byte for byte, a trailing slash included.
func TestIssuerRule(t *testing.T) {
	for _, tc := range []struct {
		configured, named string
		ok                bool
	}{
		{"https://idp.example/realms/corp", "https://idp.example/realms/corp", true},
		{"https://tenant.auth0.example.com/", "https://tenant.auth0.example.com/", true},
		{"https://idp.example/realms/corp/", "https://idp.example/realms/corp", false},
		{"https://idp.example/realms/corp", "https://idp.example/realms/corp/", false},
		{"https://idp.example/realms/corp", "https://IDP.example/realms/corp", false},
		{"https://idp.example/realms/corp", "https://impostor.example/realms/corp", false},
		{"https://idp.example", "", false},
	} {
		err := (&Document{Issuer: tc.named}).Check(tc.configured)
		var ie *IssuerError
		if tc.ok != (err == nil) || !tc.ok && !errors.As(err, &ie) {
			t.Errorf("configured %q, document names %q: %v, want ok=%v", tc.configured, tc.named, err, tc.ok)
		}
	}
}

func TestFetch(t *testing.T) {
	var body string
	status := http.StatusOK
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		if r.Header.Get("Accept") != "application/json" {
			t.Errorf("Accept: %q", r.Header.Get("Accept"))
		}
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	defer srv.Close()
	ctx, get := context.Background(), HTTP(srv.Client())

	body = `{"issuer":"` + srv.URL + `/realms/corp","token_endpoint":"` + srv.URL + `/token","jwks_uri":"` + srv.URL + `/keys"}`
	d, err := Fetch(ctx, get, srv.URL+"/realms/corp")
	if err != nil || d.TokenEndpoint != srv.URL+"/token" || d.JWKSURI != srv.URL+"/keys" {
		t.Fatalf("Fetch: %+v, %v", d, err)
	}
	if paths[len(paths)-1] != "/realms/corp/.well-known/openid-configuration" {
		t.Fatalf("read %s", paths[len(paths)-1])
	}
	// The same document read for the issuer spelled with a slash.
	var ie *IssuerError
	if _, err := Fetch(ctx, get, srv.URL+"/realms/corp/"); !errors.As(err, &ie) || ie.Named != srv.URL+"/realms/corp" ||
		!strings.Contains(err.Error(), "names issuer") || !strings.Contains(err.Error(), "trailing slash") {
		t.Fatalf("issuer with a slash the document lacks: %v", err)
	}
	if paths[len(paths)-1] != "/realms/corp/.well-known/openid-configuration" {
		t.Fatalf("read %s", paths[len(paths)-1])
	}

	status = http.StatusNotFound
	var se *StatusError
	if _, err := Fetch(ctx, get, srv.URL+"/realms/corp"); !errors.As(err, &se) || se.Status != http.StatusNotFound {
		t.Fatalf("404: %v", err)
	}
	status, body = http.StatusOK, "<html>"
	if _, err := Fetch(ctx, get, srv.URL+"/realms/corp"); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Fatalf("HTML: %v", err)
	}
	body = `{"issuer":"` + strings.Repeat("x", MaxBytes) + `"}`
	if _, err := Fetch(ctx, get, srv.URL+"/realms/corp"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a document over MaxBytes: %v", err)
	}

	// Errors of a caller's Get come back as they are.
	mine := errors.New("mine")
	if _, err := Fetch(ctx, func(context.Context, string, *Document) error { return mine }, "https://idp.example"); err != mine {
		t.Fatalf("Get's error: %v", err)
	}
}

// A provider that never answers fails the read after Timeout, even over
// http.DefaultClient, which has no timeout of its own.
func TestHTTPHangingProvider(t *testing.T) {
	defer func(d time.Duration) { timeout = d }(timeout)
	timeout = 200 * time.Millisecond
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	_, err := Fetch(context.Background(), HTTP(nil), srv.URL)
	if took := time.Since(start); err == nil || !errors.Is(err, context.DeadlineExceeded) || took > 2*time.Second {
		t.Fatalf("hanging provider: %v after %s, want a deadline error after about %s", err, took, timeout)
	}
}
