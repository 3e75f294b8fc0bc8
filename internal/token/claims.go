package token

import (
	"fmt"
	"sort"
)

// requireClaim checks one required_claims entry: equality for scalars;
// for a list in the token, containment of the wanted value(s).
func requireClaim(claims map[string]any, name string, want any) error {
	got, ok := claims[name]
	if !ok {
		return fmt.Errorf("required claim %q is missing", name)
	}
	wants, isList := want.([]any)
	if !isList {
		wants = []any{want}
	}
	for _, w := range wants {
		if !claimHas(got, w) {
			return fmt.Errorf("required claim %q does not have the configured value %v", name, w)
		}
	}
	return nil
}

func claimHas(got, want any) bool {
	if list, ok := got.([]any); ok {
		for _, g := range list {
			if sameValue(g, want) {
				return true
			}
		}
		return false
	}
	return sameValue(got, want)
}

// sameValue compares a JSON-decoded claim with a YAML-decoded setting;
// numbers are compared as float64 since YAML yields int and JSON float64.
func sameValue(got, want any) bool {
	switch w := want.(type) {
	case int:
		g, ok := got.(float64)
		return ok && g == float64(w)
	case float64:
		g, ok := got.(float64)
		return ok && g == w
	default:
		return got == want
	}
}

func sortedClaimNames(m map[string]any) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
