package login

// Unit tests of the cache and the loopback listener. The flows against
// real providers, with a real browser, are in test/login.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func testSession(issuer string) *Session {
	return &Session{Issuer: issuer, ClientID: "cli", TokenEndpoint: issuer + "/token", AccessToken: "at", RefreshToken: "rt",
		Expiry: time.Now().Add(time.Hour).Truncate(time.Second), Updated: time.Now().Truncate(time.Second)}
}

func TestCacheFilesArePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "clickgate")
	s := &Store{Dir: dir}
	sess := testSession("https://idp.example.com")
	if err := s.Save(sess); err != nil {
		t.Fatal(err)
	}
	path := s.Path(sess.Issuer, sess.ClientID)
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Fatalf("cache file mode %04o, want 0600", info.Mode().Perm())
	}
	for _, d := range []string{dir, filepath.Dir(path)} {
		if info, _ := os.Stat(d); info.Mode().Perm() != 0o700 {
			t.Fatalf("%s mode %04o, want 0700", d, info.Mode().Perm())
		}
	}
	got, err := s.Load(sess.Issuer+"/", sess.ClientID) // a trailing slash names the same issuer
	if err != nil || got.AccessToken != "at" || got.RefreshToken != "rt" || !got.Expiry.Equal(sess.Expiry) {
		t.Fatalf("Load = %+v, %v", got, err)
	}

	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		os.Chmod(path, mode)
		_, err := s.Load(sess.Issuer, sess.ClientID)
		if !errors.Is(err, ErrInsecureFile) || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Fatalf("mode %04o: Load error %v, want a refusal with the chmod hint", mode, err)
		}
	}
	os.Chmod(path, 0o600)

	// A tokens directory that others may enter is tightened on save.
	os.Chmod(filepath.Dir(path), 0o755)
	if err := s.Save(sess); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(filepath.Dir(path)); info.Mode().Perm() != 0o700 {
		t.Fatalf("tokens directory mode %04o after save, want 0700", info.Mode().Perm())
	}
	// No temporary files are left behind.
	if files, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".tmp-*")); len(files) != 0 {
		t.Fatalf("temporary files left: %v", files)
	}
}

func TestCacheKeyedByIssuerAndClient(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	a, b := testSession("https://a.example.com"), testSession("https://b.example.com")
	b.AccessToken = "bt"
	s.Save(a)
	s.Save(b)
	if s.Path(a.Issuer, "cli") == s.Path(a.Issuer, "other") || s.Path(a.Issuer, "cli") == s.Path(b.Issuer, "cli") {
		t.Fatal("different sign-ins share a cache file")
	}
	if got, _ := s.Load(b.Issuer, "cli"); got.AccessToken != "bt" {
		t.Fatalf("b's token = %q", got.AccessToken)
	}
	if _, err := s.Load(a.Issuer, "other"); !errors.Is(err, ErrNotSignedIn) {
		t.Fatalf("Load of an unknown sign-in: %v", err)
	}
	// A file put in another sign-in's place is refused.
	raw, _ := os.ReadFile(s.Path(a.Issuer, "cli"))
	os.WriteFile(s.Path(b.Issuer, "cli"), raw, 0o600)
	if _, err := s.Load(b.Issuer, "cli"); err == nil || !strings.Contains(err.Error(), "is for https://a.example.com") {
		t.Fatalf("Load of a file for another issuer: %v", err)
	}
	if entries, _ := s.Entries(); len(entries) != 2 {
		t.Fatalf("Entries = %v", entries)
	}
	if err := s.Remove(a.Issuer, "cli"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(a.Issuer, "cli"); !errors.Is(err, ErrNotSignedIn) {
		t.Fatalf("Load after Remove: %v", err)
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv(ConfigDirEnv, "/somewhere/else")
	if d, _ := DefaultDir(); d != "/somewhere/else" {
		t.Fatalf("DefaultDir = %s with %s set", d, ConfigDirEnv)
	}
	if runtime.GOOS != "linux" {
		return
	}
	t.Setenv(ConfigDirEnv, "")
	t.Setenv("XDG_CONFIG_HOME", "/home/x/.config")
	if d, _ := DefaultDir(); d != "/home/x/.config/clickgate" {
		t.Fatalf("DefaultDir = %s", d)
	}
}

func jwtWith(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return "e30." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

func TestExpiryAndWho(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := &Session{}
	s.update(&oauth2.Token{AccessToken: jwtWith(map[string]any{"exp": now.Unix() + 90, "sub": "u1"})}, now)
	if !s.Expiry.Equal(now.Add(90 * time.Second)) {
		t.Fatalf("expiry from the JWT's exp = %s", s.Expiry)
	}
	if !s.ValidFor(now, DefaultMinValid) || s.ValidFor(now.Add(31*time.Second), DefaultMinValid) {
		t.Fatal("ValidFor does not apply the 60 s margin")
	}
	if s.Who() != "u1" {
		t.Fatalf("Who = %q", s.Who())
	}
	// A refresh without a new refresh token or ID token keeps the old ones.
	s.RefreshToken, s.IDToken = "rt", jwtWith(map[string]any{"email": "a@example.com"})
	s.update((&oauth2.Token{AccessToken: "opaque", Expiry: now.Add(time.Hour)}), now)
	if s.RefreshToken != "rt" || s.Who() != "a@example.com" || !s.Expiry.Equal(now.Add(time.Hour)) {
		t.Fatalf("after refresh %+v", s)
	}
	// An opaque token without expires_in: lifetime unknown, used as it is.
	s.update(&oauth2.Token{AccessToken: "opaque"}, now)
	if !s.Expiry.IsZero() || !s.ValidFor(now.Add(time.Hour), DefaultMinValid) {
		t.Fatal("a token of unknown lifetime is not used")
	}
}

// callbackServer serves a callback whose exchange succeeds for code "good".
func callbackServer(t *testing.T) (*callback, *httptest.Server) {
	cb := &callback{
		state:  "the-state",
		prompt: io.Discard,
		result: make(chan callbackResult, 1),
		exchange: func(code string) (*oauth2.Token, error) {
			if code != "good" {
				return nil, &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant", ErrorDescription: "code expired"}
			}
			return &oauth2.Token{AccessToken: "at"}, nil
		},
	}
	srv := httptest.NewServer(cb)
	t.Cleanup(srv.Close)
	return cb, srv
}

func fetch(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestCallback(t *testing.T) {
	t.Run("forged state, then the real answer, then a second one", func(t *testing.T) {
		cb, srv := callbackServer(t)
		for _, q := range []string{"?code=good&state=forged", "?code=good", "?error=access_denied&state=x"} {
			if status, body := fetch(t, srv.URL+"/callback"+q); status != 400 || !strings.Contains(body, "state does not match") {
				t.Fatalf("%s: HTTP %d %s", q, status, body)
			}
		}
		select {
		case r := <-cb.result:
			t.Fatalf("an answer with a wrong state ended the sign-in: %+v", r)
		default:
		}
		status, body := fetch(t, srv.URL+"/callback?code=good&state=the-state")
		if status != 200 || !strings.Contains(body, "You can close this tab") || !strings.Contains(body, `<html lang="en">`) {
			t.Fatalf("good answer: HTTP %d %s", status, body)
		}
		if r := <-cb.result; r.err != nil || r.tok.AccessToken != "at" {
			t.Fatalf("result %+v", r)
		}
		if status, body := fetch(t, srv.URL+"/callback?code=good&state=the-state"); status != 400 || !strings.Contains(body, "a second one is refused") {
			t.Fatalf("second answer: HTTP %d %s", status, body)
		}
		if status, _ := fetch(t, srv.URL+"/other"); status != 404 {
			t.Fatalf("other path: HTTP %d", status)
		}
	})
	t.Run("the provider refuses", func(t *testing.T) {
		cb, srv := callbackServer(t)
		status, body := fetch(t, srv.URL+"/callback?error=access_denied&error_description=no+thanks&state=the-state")
		if status != 200 || !strings.Contains(body, "Sign-in failed") || !strings.Contains(body, "access_denied: no thanks") {
			t.Fatalf("HTTP %d %s", status, body)
		}
		if r := <-cb.result; r.err == nil || !strings.Contains(r.err.Error(), "access_denied: no thanks") {
			t.Fatalf("result %+v", r)
		}
	})
	t.Run("the code is refused at the token endpoint", func(t *testing.T) {
		cb, srv := callbackServer(t)
		if status, body := fetch(t, srv.URL+"/callback?code=stale&state=the-state"); status != 200 || !strings.Contains(body, "Sign-in failed") {
			t.Fatalf("HTTP %d %s", status, body)
		}
		if r := <-cb.result; r.err == nil || !strings.Contains(r.err.Error(), "invalid_grant: code expired") {
			t.Fatalf("result %+v", r)
		}
	})
	t.Run("markup in the provider's error is escaped", func(t *testing.T) {
		_, srv := callbackServer(t)
		_, body := fetch(t, srv.URL+"/callback?error=%3Cscript%3E&state=the-state")
		if strings.Contains(body, "<script>") {
			t.Fatal("the page echoes markup")
		}
	})
}
