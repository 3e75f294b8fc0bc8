package identity

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestRolePipeline(t *testing.T) {
	// The pipeline of DESIGN.md: mapping → filter → transform → common.
	d, err := NewDirectory(DirectoryConfig{
		Mapping:   map[string]string{"/ch-admins": "ch-admin", "Engineering": "ch-eng"},
		Filter:    "^ch-.*$",
		Transform: "s/^ch-//; s/-/_/g",
		Common:    []string{"mcp_reader"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		groups []string
		want   []string
	}{
		{nil, []string{"mcp_reader"}},
		{[]string{"/ch-admins"}, []string{"admin", "mcp_reader"}},
		{[]string{"ch-data-eng", "staff", "Engineering"}, []string{"data_eng", "eng", "mcp_reader"}},
		{[]string{"ch-analysts", "ch-analysts", "mcp_reader"}, []string{"analysts", "mcp_reader"}},
		{[]string{"xch-admins", "ch-"}, []string{"mcp_reader"}}, // filter is a full match; empty role dropped
		{[]string{"ch-mcp_reader"}, []string{"mcp_reader"}},     // deduplicated against common
	}
	for _, tc := range tests {
		if got := d.Roles(tc.groups); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Roles(%q) = %q, want %q", tc.groups, got, tc.want)
		}
	}
}

func TestDirectoryWithoutFilterKeepsEveryGroup(t *testing.T) {
	d, err := NewDirectory(DirectoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Roles([]string{"a", "b"}); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("got %q", got)
	}
}

func TestTransform(t *testing.T) {
	tests := []struct {
		expr, in, want string
	}{
		{"s/^ch-//", "ch-analysts", "analysts"},
		{"s/-/_/", "a-b-c", "a_b-c"},
		{"s/-/_/g", "a-b-c", "a_b_c"},
		{"s/A/x/gi", "aAa", "xxx"},
		{`s/^(\w+)@(\w+)$/\2_\1/`, "alice@corp", "corp_alice"},
		{"s/.*/[&]/", "role", "[role]"},
		{`s/x/\&/`, "x", "&"},
		{"s/x/$1/", "x", "$1"}, // a $ in a sed replacement is literal
		{`s|/|-|g`, "/a/b", "-a-b"},
		{`s/\//-/g`, "/a/b", "-a-b"},
		{"s/a;b/c/", "a;b", "c"},    // ; inside a pattern does not split
		{`s.a\.b.x.`, "aXb", "aXb"}, // an escaped delimiter is literal, not regexp syntax
		{`s.a\.b.x.`, "a.b", "x"},
		{`s|a\|b|x|`, "b", "b"},
		{`s|a\|b|[\|]|`, "a|b", "[|]"},
		{" s/a/b/ ;; s/b/c/ ", "a", "c"},
		{"", "same", "same"},
	}
	for _, tc := range tests {
		tr, err := ParseTransform(tc.expr)
		if err != nil {
			t.Errorf("ParseTransform(%q): %v", tc.expr, err)
			continue
		}
		if got := tr.Apply(tc.in); got != tc.want {
			t.Errorf("%q on %q = %q, want %q", tc.expr, tc.in, got, tc.want)
		}
	}
}

func TestTransformErrors(t *testing.T) {
	for _, expr := range []string{
		"y/a/b/", "s/a/b", "s/a", "s", "s/(/x/", "s/a/b/q", `s\a\b\`, strings.Repeat("s/a/b/;", 1000),
	} {
		if _, err := ParseTransform(expr); err == nil {
			t.Errorf("ParseTransform(%q) accepted", expr)
		}
	}
}

func TestFromClaims(t *testing.T) {
	base := map[string]any{"sub": "u1", "iss": "https://idp", "email": "a@x.com", "aud": "ch", "exp": 1.8e9}
	tests := []struct {
		name   string
		groups any
		user   string
		want   []string
		err    string
	}{
		{"list", []any{"a", "b"}, "email", []string{"a", "b"}, ""},
		{"space separated", "a b  c", "email", []string{"a", "b", "c"}, ""},
		{"comma separated", "a,b, c", "email", []string{"a", "b", "c"}, ""},
		{"absent", nil, "email", nil, ""},
		{"numbers", []any{1.0}, "email", nil, "groups must be strings"},
		{"object", map[string]any{}, "email", nil, "expected a list"},
		{"username not a string", nil, "exp", nil, "not a string"},
		{"username missing", nil, "upn", nil, `no "upn" claim`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			claims := map[string]any{}
			for k, v := range base {
				claims[k] = v
			}
			if tc.groups != nil {
				claims["groups"] = tc.groups
			}
			id, err := FromClaims("corp", claims, tc.user, "groups")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrClaims) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Username != "a@x.com" || id.Subject != "u1" || !reflect.DeepEqual(id.Groups, tc.want) || id.Expiry.Unix() != 1.8e9 || id.Audience[0] != "ch" {
				t.Fatalf("identity = %+v", id)
			}
		})
	}
	long := map[string]any{"sub": strings.Repeat("x", MaxUsernameBytes+1)}
	if _, err := FromClaims("corp", long, "sub", "groups"); err == nil {
		t.Error("an over-long user name was accepted")
	}
}

func TestAllowedDomains(t *testing.T) {
	d, err := NewDirectory(DirectoryConfig{AllowedDomains: []string{"Example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id *Identity
		ok bool
	}{
		{&Identity{Username: "alice@example.com"}, true},
		{&Identity{Username: "alice@EXAMPLE.COM"}, true},
		{&Identity{Username: "alice", Claims: map[string]any{"email": "alice@example.com"}}, true},
		{&Identity{Username: "alice@evil.com"}, false},
		{&Identity{Username: "alice", Claims: map[string]any{"email": "alice@example.com", "email_verified": true}}, true},
		{&Identity{Username: "alice", Claims: map[string]any{"email": "alice@example.com", "email_verified": false}}, false},
		{&Identity{Username: "alice", Claims: map[string]any{"email": "alice@example.com", "email_verified": "true"}}, false},
		{&Identity{Username: "alice@example.com.evil.com"}, false},
		{&Identity{Username: "alice"}, false},
	}
	for _, tc := range tests {
		_, err := d.Principal(tc.id)
		if tc.ok != (err == nil) {
			t.Errorf("%q: err = %v", tc.id.Username, err)
		}
		if err != nil && !errors.Is(err, ErrDenied) {
			t.Errorf("%q: err %v is not ErrDenied", tc.id.Username, err)
		}
	}
}

func TestNewDirectoryErrors(t *testing.T) {
	if _, err := NewDirectory(DirectoryConfig{Filter: "("}); err == nil || !strings.Contains(err.Error(), "directory.roles.filter") {
		t.Errorf("bad filter: %v", err)
	}
	if _, err := NewDirectory(DirectoryConfig{Transform: "s/a/"}); err == nil || !strings.Contains(err.Error(), "directory.roles.transform") {
		t.Errorf("bad transform: %v", err)
	}
}
