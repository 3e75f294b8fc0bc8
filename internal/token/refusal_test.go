package token_test

import (
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/token"
)

// wantRefusal checks that a processor refused raw with reason want: a
// *token.Error, temporary exactly when the IdP was unavailable, that does
// not contain the token. It returns the error for further checks.
func wantRefusal(t *testing.T, id *identity.Identity, err error, want token.Reason, raw string) *token.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("Verify succeeded as %q; want %s", id.Username, want)
	}
	if strings.Contains(err.Error(), raw) {
		t.Errorf("error message contains the token: %v", err)
	}
	terr, ok := err.(*token.Error)
	if !ok {
		t.Fatalf("error is a %T, not *token.Error: %v", err, err)
	}
	if got := token.ReasonOf(err); got != want {
		t.Fatalf("reason %s, want %s (%v)", got, want, err)
	}
	if got, want := token.IsTemporary(err), want == token.ReasonUnavailable; got != want {
		t.Errorf("IsTemporary = %v, want %v", got, want)
	}
	return terr
}
