package chhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// fake answers like ClickHouse: the request's credentials and query string
// for "SELECT who", refusals for "FAIL …", the version for SELECT version().
func fake(t *testing.T) (*url.URL, *atomic.Int32) {
	var versions atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch sql := string(body); {
		case sql == "SELECT version()":
			versions.Add(1)
			io.WriteString(w, "25.8.2.1\n")
		case sql == "SELECT who":
			user, pw, _ := r.BasicAuth()
			io.WriteString(w, user+":"+pw+"|"+r.Header.Get("Authorization")+"|"+r.URL.RawQuery+"|"+r.Header.Get("X-Extra")+"\n")
		case sql == "FAIL header":
			w.Header().Set("X-ClickHouse-Exception-Code", "497")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "DB::Exception: not enough privileges\n")
		case strings.HasPrefix(sql, "FAIL "):
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, strings.TrimPrefix(sql, "FAIL ")+"\n")
		default:
			io.WriteString(w, sql)
		}
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL + "/?database=x")
	return u, &versions
}

func TestCredentialsParamsAndHeader(t *testing.T) {
	u, _ := fake(t)
	ctx := context.Background()
	for _, tc := range []struct {
		c      *Client
		params url.Values
		want   string
	}{
		{&Client{URL: u, User: "svc", Password: "pw"}, nil, "svc:pw|Basic c3ZjOnB3|database=x|\n"},
		{&Client{URL: u, User: "svc", Bearer: "tok"}, url.Values{"readonly": {"1"}}, ":|Bearer tok|readonly=1|\n"},
		{&Client{URL: u}, url.Values{}, ":|||\n"},
	} {
		if got, err := tc.c.Query(ctx, "SELECT who", tc.params); err != nil || got != tc.want {
			t.Errorf("Query = %q, %v; want %q", got, err, tc.want)
		}
	}
	body, _, err := (&Client{URL: u}).Open(ctx, "SELECT who", nil, http.Header{"X-Extra": {"yes"}})
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	if got, _ := io.ReadAll(body); string(got) != ":||database=x|yes\n" {
		t.Errorf("Open = %q", got)
	}
}

func TestExceptions(t *testing.T) {
	u, _ := fake(t)
	c := &Client{URL: u}
	for sql, want := range map[string]Exception{
		"FAIL header": {Status: 403, Code: 497, Message: "DB::Exception: not enough privileges"},
		"FAIL Code: 516. DB::Exception: alice: Authentication failed":                            {Status: 500, Code: 516, Message: "Code: 516. DB::Exception: alice: Authentication failed"},
		"FAIL Code: 164, e.displayText() = DB::Exception: Cannot execute query in readonly mode": {Status: 500, Code: 164, Message: "Code: 164, e.displayText() = DB::Exception: Cannot execute query in readonly mode"},
		"FAIL no code": {Status: 500, Message: "no code"},
	} {
		_, err := c.Exec(context.Background(), sql)
		ex, ok := err.(*Exception)
		if !ok || *ex != want || err.Error() != "clickhouse: "+want.Message {
			t.Errorf("%s: %#v", sql, err)
		}
	}
}

func TestMaxAnswer(t *testing.T) {
	u, _ := fake(t)
	long := strings.Repeat("x", DefaultMaxAnswer+10)
	// An answer past the limit is an error, never a silently cut result.
	if got, err := (&Client{URL: u}).Exec(context.Background(), long); err == nil || got != "" || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("default limit: %d bytes, %v", len(got), err)
	}
	if got, err := (&Client{URL: u, MaxAnswer: 5}).Query(context.Background(), "0123456789", nil); err == nil || got != "" {
		t.Errorf("MaxAnswer 5, 10 bytes: %q, %v", got, err)
	}
	if got, err := (&Client{URL: u, MaxAnswer: 5}).Query(context.Background(), "01234", nil); err != nil || got != "01234" {
		t.Errorf("MaxAnswer 5, 5 bytes: %q, %v", got, err)
	}
}

func TestUnreachable(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:1/")
	_, err := (&Client{URL: u}).Exec(context.Background(), "SELECT 1")
	var ue *url.Error
	if err == nil || !strings.HasPrefix(err.Error(), "clickhouse: ") || !errors.As(err, &ue) {
		t.Errorf("Exec: %v", err)
	}
	_, err = (&Client{URL: u}).Query(context.Background(), "SELECT 1", nil)
	if !errors.As(err, &ue) || strings.HasPrefix(err.Error(), "clickhouse: ") {
		t.Errorf("Query: %v, want the HTTP client's error as it is", err)
	}
}

func TestVersionIsRemembered(t *testing.T) {
	u, versions := fake(t)
	c := &Client{URL: u}
	for range 3 {
		v, err := c.Version(context.Background())
		if err != nil || v != (Version{Major: 25, Minor: 8, Raw: "25.8.2.1"}) || !v.AtLeast(20, 12) || v.AtLeast(25, 9) {
			t.Fatalf("Version = %+v, %v", v, err)
		}
	}
	if n := versions.Load(); n != 1 {
		t.Errorf("asked %d times", n)
	}
	for _, bad := range []string{"", "25", "x.y"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}
