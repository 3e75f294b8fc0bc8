package cimd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// cimdServer serves documents over TLS; docs maps path to a handler.
func cimdServer(t *testing.T, handler func(base string) http.Handler) (*httptest.Server, *Fetcher) {
	t.Helper()
	var base string
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler(base).ServeHTTP(w, r)
	})
	srv.StartTLS()
	t.Cleanup(srv.Close)
	base = srv.URL
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	f := NewFetcher(Options{AllowPrivate: true, RootCAs: roots, Timeout: 2 * time.Second})
	return srv, f
}

func docHandler(hits *atomic.Int32, mutate func(base string, d map[string]any)) func(string) http.Handler {
	return func(base string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hits != nil {
				hits.Add(1)
			}
			d := map[string]any{
				"client_id":     base + r.URL.Path,
				"client_name":   "Test Client",
				"redirect_uris": []string{"http://127.0.0.1/callback"},
			}
			if mutate != nil {
				mutate(base, d)
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(d)
		})
	}
}

func TestFetchHappyPathAndCache(t *testing.T) {
	var hits atomic.Int32
	srv, f := cimdServer(t, docHandler(&hits, nil))
	id := srv.URL + "/client.json"
	for i := 0; i < 3; i++ {
		md, err := f.Fetch(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if md.ClientID != id || md.ClientName != "Test Client" || len(md.RedirectURIs) != 1 {
			t.Fatalf("got %+v", md)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("document fetched %d times, want 1 (cache)", n)
	}
}

func TestRefusals(t *testing.T) {
	cases := []struct {
		name    string
		handler func(string) http.Handler
		path    string
		want    string
	}{
		{"mismatched client_id", docHandler(nil, func(_ string, d map[string]any) {
			d["client_id"] = "https://other.example.com/client.json"
		}), "/client.json", "does not equal"},
		{"no redirect_uris", docHandler(nil, func(_ string, d map[string]any) {
			delete(d, "redirect_uris")
		}), "/client.json", "redirect_uris"},
		{"secret auth method", docHandler(nil, func(_ string, d map[string]any) {
			d["token_endpoint_auth_method"] = "client_secret_basic"
		}), "/client.json", "token_endpoint_auth_method"},
		{"oversized", func(string) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(`{"client_id":"` + strings.Repeat("a", 10<<20) + `"}`))
			})
		}, "/client.json", "larger than"},
		{"oversized with content-length", func(string) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "100000")
				w.Write([]byte(strings.Repeat(" ", 100000)))
			})
		}, "/client.json", "larger than"},
		{"not json", func(string) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) })
		}, "/client.json", "not JSON"},
		{"status 404", func(string) http.Handler { return http.NotFoundHandler() }, "/client.json", "status 404"},
		{"redirect to 127.0.0.1", func(base string) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/client.json" {
					http.Redirect(w, r, "https://127.0.0.1:1/client.json", http.StatusFound)
					return
				}
			})
		}, "/client.json", "redirect"},
		{"slow", func(string) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-time.After(5 * time.Second):
				case <-r.Context().Done():
				}
			})
		}, "/client.json", "fetch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, f := cimdServer(t, c.handler)
			_, err := f.Fetch(context.Background(), srv.URL+c.path)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrRefused containing %q", err, c.want)
			}
		})
	}
}

func TestRefusesPrivateAddresses(t *testing.T) {
	var hits atomic.Int32
	srv, _ := cimdServer(t, docHandler(&hits, nil))
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	// Names resolve through a fake resolver: "rebind.test" to loopback, as a
	// rebinding attacker's DNS would answer at connect time.
	f := NewFetcher(Options{RootCAs: roots, Timeout: 2 * time.Second,
		LookupIP: func(_ context.Context, host string) ([]netip.Addr, error) {
			switch host {
			case "rebind.test":
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			case "mixed.test":
				return []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("10.0.0.1")}, nil
			case "metadata.test":
				return []netip.Addr{netip.MustParseAddr("::ffff:169.254.169.254")}, nil
			}
			return nil, errors.New("no such host")
		}})
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	for _, id := range []string{
		srv.URL + "/client.json", // 127.0.0.1
		"https://rebind.test" + port + "/client.json",
		"https://mixed.test/client.json",
		"https://metadata.test/client.json",
		"https://169.254.169.254/latest/meta-data",
		"https://10.1.2.3/client.json",
		"https://192.168.1.1/client.json",
		"https://[::1]" + port + "/client.json",
		"https://[fe80::1]/client.json",
		"https://[fd00::1]/client.json",
		"https://0.0.0.0" + port + "/client.json",
		"https://224.0.0.1/client.json",
		"https://100.64.0.1/client.json",
		"https://[::ffff:127.0.0.1]" + port + "/client.json",
	} {
		_, err := f.Fetch(context.Background(), id)
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not public") {
			t.Errorf("%s: got %v, want a not-public refusal", id, err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("server was reached %d times", hits.Load())
	}
}

func TestValidateURL(t *testing.T) {
	for _, id := range []string{
		"http://example.com/client.json",
		"example.com/client.json",
		"https://example.com",
		"https://example.com/",
		"https://user@example.com/client.json",
		"https://example.com/client.json#x",
		"https://example.com/a/../client.json",
		"https:///client.json",
		"https:example.com",
		"client-123",
		"",
	} {
		if _, err := ValidateURL(id); !errors.Is(err, ErrRefused) {
			t.Errorf("%q accepted", id)
		}
		f := NewFetcher(Options{AllowPrivate: true})
		if _, err := f.Fetch(context.Background(), id); !errors.Is(err, ErrRefused) {
			t.Errorf("Fetch(%q): %v", id, err)
		}
	}
	if _, err := ValidateURL("https://app.example.com/oauth/client.json"); err != nil {
		t.Error(err)
	}
}

func TestIsPublicAddr(t *testing.T) {
	for s, want := range map[string]bool{
		"8.8.8.8": true, "1.1.1.1": true, "2606:4700:4700::1111": true,
		"127.0.0.1": false, "10.0.0.1": false, "172.16.0.1": false, "192.168.0.1": false,
		"169.254.169.254": false, "0.0.0.0": false, "::": false, "::1": false, "fe80::1": false,
		"fd00::1": false, "224.0.0.1": false, "ff02::1": false, "255.255.255.255": false,
		"100.64.0.1": false, "::ffff:10.0.0.1": false, "64:ff9b::a00:1": false, "2002:a00:1::": false,
	} {
		if got := IsPublicAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("IsPublicAddr(%s) = %v", s, got)
		}
	}
}

// A refused document stays refused for a while: naming it again does not
// fetch it again.
func TestRemembersRefusals(t *testing.T) {
	var hits atomic.Int32
	srv, f := cimdServer(t, func(string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			http.NotFound(w, r)
		})
	})
	for i := 0; i < 3; i++ {
		if _, err := f.Fetch(context.Background(), srv.URL+"/client.json"); !errors.Is(err, ErrRefused) {
			t.Fatalf("fetch %d: %v", i, err)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("the refused document was fetched %d times, want 1", n)
	}
}

// Only MaxInFlight documents are fetched at once; more are refused at once
// rather than queued.
func TestBoundsFetchesInFlight(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	srv, _ := cimdServer(t, func(base string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			started <- struct{}{}
			<-release
			docHandler(nil, nil)(base).ServeHTTP(w, r)
		})
	})
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	f := NewFetcher(Options{AllowPrivate: true, RootCAs: roots, Timeout: 5 * time.Second, MaxInFlight: 1})
	done := make(chan error)
	go func() {
		_, err := f.Fetch(context.Background(), srv.URL+"/a.json")
		done <- err
	}()
	<-started
	if _, err := f.Fetch(context.Background(), srv.URL+"/b.json"); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Fatalf("a second fetch while one runs: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the first fetch: %v", err)
	}
}
