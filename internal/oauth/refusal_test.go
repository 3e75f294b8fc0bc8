package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/oauth/cimd"
	"github.com/clickgate/clickgate/internal/oauth/seal"
	"github.com/clickgate/clickgate/internal/token"
)

// syncBuffer is a log sink for handlers that run on server goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var requestIDPattern = regexp.MustCompile(`request id ([A-Za-z0-9_-]{16})`)

// refusalBroker is a broker whose client metadata documents resolve
// through a fake resolver, as an internal DNS would answer.
func refusalBroker(t *testing.T, allowPrivate bool, lookup func(context.Context, string) ([]netip.Addr, error)) (*httptest.Server, *syncBuffer) {
	t.Helper()
	sealer, err := seal.New(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	b := New(Options{
		Issuer: "https://clickgate.example", Resource: "https://clickgate.example/mcp", Sealer: sealer,
		Documents: cimd.NewFetcher(cimd.Options{AllowPrivate: allowPrivate, LookupIP: lookup}),
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
	})
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	return srv, logs
}

// TestDocumentRefusalsAreGeneric: whatever the reason a client metadata
// document is refused (how its name resolves, which resolver failed, what
// the network said), the authorize page and the token endpoint's
// error_description say the same generic thing with a request id, and the
// reason is in the log under that id.
func TestDocumentRefusalsAreGeneric(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "intranet.corp.test":
			return []netip.Addr{netip.MustParseAddr("10.0.0.5")}, nil
		case "mixed.corp.test":
			return []netip.Addr{netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("172.16.4.4")}, nil
		case "closed.corp.test":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.96.0.10:53", IsNotFound: true}
	}
	tests := []struct {
		name         string
		allowPrivate bool
		clientID     string
		detail       []string // in the log, never in a response
	}{
		{"resolves to a private address", false, "https://intranet.corp.test/client.json", []string{"intranet.corp.test", "10.0.0.5", "not public"}},
		{"mixes public and private addresses", false, "https://mixed.corp.test/client.json", []string{"172.16.4.4"}},
		{"resolver error", false, "https://nowhere.corp.test/client.json", []string{"10.96.0.10:53", "no such host"}},
		{"private address literal", false, "https://169.254.169.254/latest/meta-data/client.json", []string{"169.254.169.254"}},
		{"network error", true, fmt.Sprintf("https://closed.corp.test:%d/client.json", closedPort), []string{"127.0.0.1", "connection refused"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, logs := refusalBroker(t, tc.allowPrivate, lookup)
			forbidden := append([]string{"resolve", "not public", "no such host", "dial", "connect", "10.96.0.10", "lookup"}, tc.detail...)
			if u, err := url.Parse(tc.clientID); err == nil {
				forbidden = append(forbidden, u.Hostname())
			}
			checkGeneric := func(where, text string) string {
				t.Helper()
				for _, f := range forbidden {
					if strings.Contains(text, f) {
						t.Errorf("%s reveals %q:\n%s", where, f, text)
					}
				}
				m := requestIDPattern.FindStringSubmatch(text)
				if m == nil {
					t.Fatalf("%s names no request id:\n%s", where, text)
				}
				log := logs.String()
				for _, line := range strings.Split(log, "\n") {
					if strings.Contains(line, "request_id="+m[1]) {
						for _, d := range tc.detail {
							if !strings.Contains(line, d) {
								t.Errorf("the log line of request %s lacks %q:\n%s", m[1], d, line)
							}
						}
						return m[1]
					}
				}
				t.Fatalf("the log has no line with request_id=%s:\n%s", m[1], log)
				return ""
			}

			q := url.Values{"client_id": {tc.clientID}, "redirect_uri": {"http://127.0.0.1/callback"}, "response_type": {"code"},
				"code_challenge": {strings.Repeat("a", 43)}, "code_challenge_method": {"S256"}}
			resp, err := http.Get(srv.URL + PathAuthorize + "?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" ||
				!strings.Contains(string(page), "could not be verified") || !strings.Contains(string(page), "could not be fetched or is not valid") {
				t.Fatalf("authorize: %d\n%s", resp.StatusCode, page)
			}
			pageID := checkGeneric("the authorize page", string(page))

			resp, err = http.PostForm(srv.URL+PathToken, url.Values{"grant_type": {"authorization_code"}, "client_id": {tc.clientID}, "code": {"x"}})
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]string
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusUnauthorized || body["error"] != "invalid_client" {
				t.Fatalf("token: %d %v %v", resp.StatusCode, body, err)
			}
			if tokenID := checkGeneric("the token endpoint's error_description", body["error_description"]); tokenID == pageID {
				t.Errorf("two refusals share request id %s", tokenID)
			}
		})
	}
}

// The other unknown-client pages name no address and stay specific.
func TestUnknownClientPages(t *testing.T) {
	srv, _ := refusalBroker(t, false, nil)
	for id, want := range map[string]string{
		"":                        "client_id is missing",
		"nobody":                  "unknown client_id",
		"cg1.forged":              "unknown client_id",
		strings.Repeat("x", 5000): "client_id is too long",
	} {
		resp, err := http.Get(srv.URL + PathAuthorize + "?" + url.Values{"client_id": {id}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(page), "Unknown application") || !strings.Contains(string(page), want) {
			t.Errorf("client_id %.20q: %d\n%s", id, resp.StatusCode, page)
		}
	}
}

func TestPersonRefusal(t *testing.T) {
	const id = "abcdefghijklmnop"
	tests := []struct {
		name, code string
		err        error
		want       []string
		notWant    []string
	}{
		{"directory policy", "access_denied", fmt.Errorf("%w: e-mail domain %q is not in directory.allowed_domains", identity.ErrDenied, "evil.example"),
			[]string{"does not let this person in", "allowed_domains", "evil.example"}, nil},
		{"IdP unreachable", "temporarily_unavailable", fmt.Errorf("fetching keys: %w", &token.Error{Reason: token.ReasonUnavailable, Processor: "corp"}),
			[]string{"try again", id}, []string{"fetching keys", "corp"}},
		{"verification error with an address", "access_denied", errors.New("token: corp: jwks from https://idp.internal:8443: dial tcp 10.0.0.5:8443: connection refused"),
			[]string{"could not verify", id}, []string{"10.0.0.5", "idp.internal", "dial"}},
		{"another processor", "access_denied", errors.New("the token was proved by processor other, not corp"),
			[]string{"could not verify", id}, []string{"other"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, desc := personRefusal(tc.err, id)
			if code != tc.code {
				t.Errorf("code %q, want %q", code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(desc, w) {
					t.Errorf("%q lacks %q", desc, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(desc, w) {
					t.Errorf("%q reveals %q", desc, w)
				}
			}
		})
	}
}
