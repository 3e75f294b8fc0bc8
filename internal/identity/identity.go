// Package identity defines who a caller is (Identity, proven by a token)
// and who they are in ClickHouse (Principal), and the Directory that turns
// one into the other.
package identity

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Identity is what a token processor proved about a caller.
type Identity struct {
	Processor string         `json:"processor"`
	Issuer    string         `json:"issuer,omitempty"`
	Subject   string         `json:"subject"`
	Username  string         `json:"username"`
	Groups    []string       `json:"groups"`
	Audience  []string       `json:"audience,omitempty"`
	Expiry    time.Time      `json:"expiry"`
	Claims    map[string]any `json:"claims,omitempty"`
}

// Principal is a ClickHouse user name plus roles, derived from an Identity.
type Principal struct {
	User      string    `json:"user"`
	Roles     []string  `json:"roles"`
	Processor string    `json:"processor"`
	Subject   string    `json:"subject"`
	Expiry    time.Time `json:"expiry"`
}

// MaxUsernameBytes bounds user names taken from claims; ClickHouse
// identifiers can be long, but a megabyte-long name is an attack.
const MaxUsernameBytes = 256

// ErrClaims reports a token whose claims cannot form an identity.
var ErrClaims = errors.New("identity")

// FromClaims builds an Identity from verified claims: the user name from
// usernameClaim (string claims only), groups from groupsClaim (a JSON array
// of strings, or one string separated by spaces or commas).
func FromClaims(processor string, claims map[string]any, usernameClaim, groupsClaim string) (*Identity, error) {
	id := &Identity{Processor: processor, Claims: claims}
	id.Subject, _ = claims["sub"].(string)
	id.Issuer, _ = claims["iss"].(string)
	raw, ok := claims[usernameClaim]
	if !ok {
		return nil, fmt.Errorf("%w: token has no %q claim to take the user name from", ErrClaims, usernameClaim)
	}
	name, ok := raw.(string)
	if !ok {
		return nil, fmt.Errorf("%w: claim %q is a %s, not a string; choose a string claim as username_claim", ErrClaims, usernameClaim, jsonKind(raw))
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return nil, fmt.Errorf("%w: claim %q is empty", ErrClaims, usernameClaim)
	}
	if len(name) > MaxUsernameBytes {
		return nil, fmt.Errorf("%w: claim %q is longer than %d bytes", ErrClaims, usernameClaim, MaxUsernameBytes)
	}
	id.Username = name
	groups, err := parseGroups(claims[groupsClaim])
	if err != nil {
		return nil, fmt.Errorf("%w: claim %q: %v", ErrClaims, groupsClaim, err)
	}
	id.Groups = groups
	switch aud := claims["aud"].(type) {
	case string:
		id.Audience = []string{aud}
	case []any:
		for _, a := range aud {
			if s, ok := a.(string); ok {
				id.Audience = append(id.Audience, s)
			}
		}
	}
	if exp, ok := claims["exp"].(float64); ok {
		id.Expiry = time.Unix(int64(exp), 0).UTC()
	}
	return id, nil
}

func parseGroups(v any) ([]string, error) {
	switch g := v.(type) {
	case nil:
		return nil, nil
	case string:
		return strings.FieldsFunc(g, func(r rune) bool { return r == ' ' || r == ',' }), nil
	case []any:
		out := make([]string, 0, len(g))
		for _, e := range g {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("holds a %s; groups must be strings", jsonKind(e))
			}
			out = append(out, s)
		}
		return out, nil
	case []string:
		return g, nil
	default:
		return nil, fmt.Errorf("is a %s; expected a list of strings or one string", jsonKind(v))
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64, int, int64:
		return "number"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
