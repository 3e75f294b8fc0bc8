package token

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for the token path. Run them with `make fuzz`; inputs that
// once failed are kept under testdata/fuzz/ and run by every `go test`.

// echoMin is the input length from which an error message containing the
// input counts as echoing the token: shorter inputs may occur in fixed
// message text by chance ("token", "JWT", …).
const echoMin = 16

// b64 is base64url without padding, as in JWS compact serialization.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// parseSeeds are shapes that reach every branch of Parse.
func parseSeeds() []string {
	hdr := b64(`{"alg":"RS256","typ":"JWT","kid":"k1"}`)
	claims := b64(`{"iss":"https://idp.test/realms/corp","sub":"u-1","aud":"clickhouse","exp":1900000000}`)
	return []string{
		"",
		"opaque-token-1234567890abcdef",
		"gho_16C7e42F292c6912E7710c838347Ae178B4a",
		"ya29.a0AfH6SMBx",
		"a.b",
		"a.b.c",
		"a.b.c.d",
		"..",
		hdr + "." + claims + ".c2ln",
		hdr + "." + claims + ".",
		b64(`{"alg":"none"}`) + "." + claims + ".",
		b64(`{"alg":"HS256"}`) + "." + claims + ".c2ln",
		b64(`{"alg":"XX999"}`) + "." + claims + ".c2ln",
		b64(`{"alg":"RS256","crit":["exp"]}`) + "." + claims + ".c2ln",
		b64(`{"alg":"RS256","kid":17}`) + "." + claims + ".c2ln",
		b64(`{"alg":"RS256","jwk":{"kty":"oct","k":"AAAA"}}`) + "." + claims + ".c2ln",
		b64(`{"alg":"RS256"}`) + "." + b64(`{"iss":17}`) + ".c2ln",
		b64(`{"alg":"RS256"}`) + "." + b64(`[1,2,3]`) + ".c2ln",
		b64(`{"alg":"RS256"}`) + "." + b64(`not json`) + ".c2ln",
		b64(`{"alg":"RS256"}`) + ".!!!." + "c2ln",
		"eyJ.eyJ.sig=",
		"token with spaces",
		"tab\tinside.a.b",
		"caf\u00e9.a.b",
		strings.Repeat("A", MaxTokenBytes),
		strings.Repeat("A", MaxTokenBytes+1),
	}
}

// checkNoEcho fails when msg contains raw (long enough to matter) or, for
// a token of JWS shape, its signature: a refusal must never echo the token.
func checkNoEcho(t *testing.T, raw, msg string) {
	t.Helper()
	if len(raw) > echoMin && strings.Contains(msg, raw) {
		t.Fatalf("error message echoes the token:\n%s", msg)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || len(parts[2]) <= echoMin || !strings.Contains(msg, parts[2]) {
		return
	}
	// The header and payload are the caller's own words and may be quoted
	// (clipped); only complain if the signature did not come from them.
	for _, p := range parts[:2] {
		if dec, err := base64.RawURLEncoding.DecodeString(p); err != nil || strings.Contains(string(dec), parts[2]) {
			return
		}
	}
	t.Fatalf("error message echoes the token's signature:\n%s", msg)
}

// FuzzParse: Parse never panics; a returned error is an *Error with a
// Reason and never echoes the input; a returned Token is consistent.
func FuzzParse(f *testing.F) {
	for _, s := range parseSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := Parse(raw)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse returned %T %v, want *Error", err, err)
			}
			if e.Reason == "" {
				t.Fatalf("Parse error without a Reason: %v", err)
			}
			if tok != nil {
				t.Fatalf("Parse returned both a Token and an error")
			}
			checkNoEcho(t, raw, err.Error())
			return
		}
		if tok == nil {
			t.Fatal("Parse returned neither a Token nor an error")
		}
		if tok.Raw != raw {
			t.Fatalf("Token.Raw = %q, want the input", tok.Raw)
		}
		if raw == "" || len(raw) > MaxTokenBytes {
			t.Fatalf("Parse accepted a token of %d bytes", len(raw))
		}
		if tok.JWT != nil && tok.ParseError != nil {
			t.Fatal("Token has both a parsed JWT and a ParseError")
		}
		if strings.Count(raw, ".") != 2 && tok.LooksLikeJWT() {
			t.Fatalf("a token with %d dots looks like a JWT", strings.Count(raw, "."))
		}
		if tok.ParseError != nil {
			checkNoEcho(t, raw, tok.ParseError.Error())
		}
		if tok.JWT != nil {
			if tok.Issuer != "" && strings.Contains(raw, tok.Issuer) && len(tok.Issuer) > echoMin {
				// Impossible unless base64 happens to spell the issuer;
				// not a failure, but worth knowing the fuzzer got there.
				t.Logf("issuer %q appears verbatim in the raw token", tok.Issuer)
			}
			for _, h := range tok.JWT.Headers {
				if h.Algorithm == "none" || h.Algorithm == "" {
					t.Fatalf("Parse accepted algorithm %q", h.Algorithm)
				}
			}
		} else if tok.Issuer != "" {
			t.Fatalf("a token that is not a parsed JWT has issuer %q", tok.Issuer)
		}
	})
}

// The FuzzVerify fixture is fixed, not generated, so that every fuzzing
// worker and every later run sees the same keys and the same valid tokens,
// and a saved failing input reproduces. The tokens carry validClaims()
// (testClock-relative, so valid at testClock forever), signed by the
// private halves of fuzzJWKS (kids rsa-1, ec-1, ed-1) made with
// newSigningKey and then discarded.
const fuzzJWKS = `{"keys": [
	{"use": "sig", "kty": "RSA", "kid": "rsa-1", "alg": "RS256", "n": "xO67FOgdcTXIUlHLNTKUNBUOIctjcPugq_nwxRw9iIB2QyDDvK7yohj9C2KaxA9icM9nP38IwkosSITk9d35rpZud3BstIdiH3Wd0x33bHIbctcKTqqciohvSy8o6ein0XdefF58Yfdsq1CkBOsjQdMmFVHsFyirwIB5sjPISvQ4CfKg3FAsPlRHDKTvSuz-dIDoHywSJ5K1mbJz0pd4X3Dc8MOLV4zuiawXHJTY0VPgyZ6hgbLYlg8RCuohC6FI6RIqYqlRzgi3LGOUPkia29lq2T-FZugs9P7LEP-cxrbgM4Dneq2nug-SZGa6_2K523zzNi_Q_C7ggCUhLR6Ljw", "e": "AQAB"},
	{"use": "sig", "kty": "EC", "kid": "ec-1", "crv": "P-256", "alg": "ES256", "x": "wYcIIEgbPmIu9k3OPh83ne-dXIejfadPzoiGJ75ykc4", "y": "rtKJf-FagTvi5nB-ijEGn33Pi89FdsqusoRw2Zocy-o"},
	{"use": "sig", "kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "alg": "EdDSA", "x": "Tk5WH_FwS0JPEGwOy60Chu27y9gYTEaH6JX-zY5YweA"}
]}`

var fuzzGoodTokens = []string{
	// RS256
	"eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIiwidHlwIjoiSldUIn0.eyJhdWQiOlsiY2xpY2tob3VzZSJdLCJlbWFpbCI6ImFs" +
		"aWNlQGV4YW1wbGUuY29tIiwiZW1haWxfdmVyaWZpZWQiOnRydWUsImV4cCI6MTc5NTQzODgwMCwiZ3JvdXBzIjpbImNoLWFuYWx5" +
		"c3RzIiwic3RhZmYiXSwiaWF0IjoxNzk1NDM1MTQwLCJpc3MiOiJodHRwczovL2lkcC50ZXN0L3JlYWxtcy9jb3JwIiwibmJmIjox" +
		"Nzk1NDM1MTQwLCJzdWIiOiJ1LTEyMyJ9.ZusqS7UVp-D9dYD6JeO6lyexHyQ-Je2ahidRXhO3LQhfU1Ut03ZF2gWBhOIO--ZaOML" +
		"fKyRw9VP5zMA6HVLviEFrqDVEofFF8JCwiZcycHBYudMN7E1sPyAYYxk5JpK5_FmHQpdSsbqVrs1G4jl-htgAd8Xy_vcu_ra7dh-" +
		"di3ikjE5ZN59o88-wn4LWQoAV0_PN5Pjm58WiLszxY5yqTYuS81hvunVwxXDFy-6mXb32d4dzaRF9rOifIvftfvd_utH0z0nCDcK" +
		"drdnEQKXJ0fivTDuLP9fU_P5UNCKnLpFIXDKQq3MlhG-lPS1E5THJAXjB4uX-_Fd_8vtYUPZ7Tg",
	// ES256
	"eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjLTEiLCJ0eXAiOiJKV1QifQ.eyJhdWQiOlsiY2xpY2tob3VzZSJdLCJlbWFpbCI6ImFsa" +
		"WNlQGV4YW1wbGUuY29tIiwiZW1haWxfdmVyaWZpZWQiOnRydWUsImV4cCI6MTc5NTQzODgwMCwiZ3JvdXBzIjpbImNoLWFuYWx5c" +
		"3RzIiwic3RhZmYiXSwiaWF0IjoxNzk1NDM1MTQwLCJpc3MiOiJodHRwczovL2lkcC50ZXN0L3JlYWxtcy9jb3JwIiwibmJmIjoxN" +
		"zk1NDM1MTQwLCJzdWIiOiJ1LTEyMyJ9.QfLIIpEk_AHmj3zyHRR7qfInhsxZvkZVoYxkIXNIH-_B8Q8Z8JiFnqCMpKo5hDYMgX0Q" +
		"jlDeWQpJwLjUG4NuuQ",
	// EdDSA
	"eyJhbGciOiJFZERTQSIsImtpZCI6ImVkLTEiLCJ0eXAiOiJKV1QifQ.eyJhdWQiOlsiY2xpY2tob3VzZSJdLCJlbWFpbCI6ImFsa" +
		"WNlQGV4YW1wbGUuY29tIiwiZW1haWxfdmVyaWZpZWQiOnRydWUsImV4cCI6MTc5NTQzODgwMCwiZ3JvdXBzIjpbImNoLWFuYWx5c" +
		"3RzIiwic3RhZmYiXSwiaWF0IjoxNzk1NDM1MTQwLCJpc3MiOiJodHRwczovL2lkcC50ZXN0L3JlYWxtcy9jb3JwIiwibmJmIjoxN" +
		"zk1NDM1MTQwLCJzdWIiOiJ1LTEyMyJ9.1Ts3ObLr_aHnGVd650fVrLl-WnkYSV_HOf6jnJAeuxtwC2-WXd2TU_rnL0QfgjfA4GVb" +
		"3Z_qIrb8JXoqWYhmCw",
}

// fuzzVerifyFixture is the processor FuzzVerify verifies with.
type fuzzVerifyFixture struct {
	processor Processor
	good      []string // valid tokens, each accepted at testClock
}

func fuzzVerifySetup(tb testing.TB) *fuzzVerifyFixture {
	tb.Helper()
	cfg := &Config{
		Type: TypeJWT, Issuer: testIssuer, Keys: fuzzJWKS,
		Audiences: []string{testAudience}, UsernameClaim: "email",
	}
	cfg.ApplyDefaults()
	p, err := New("corp", cfg, Options{Now: fixedClock(testClock)})
	if err != nil {
		tb.Fatal(err)
	}
	fix := &fuzzVerifyFixture{processor: p, good: fuzzGoodTokens}
	v := NewVerifier([]Processor{p}, nil, nil, fixedClock(testClock))
	for _, g := range fix.good {
		if _, err := v.Verify(context.Background(), g); err != nil {
			tb.Fatalf("fixed valid token refused: %v", err)
		}
	}
	return fix
}

// FuzzVerify runs a Verifier over a jwt processor with static keys on an
// arbitrary string and on three valid tokens (RS256, ES256, EdDSA) with
// one byte replaced at pos: nothing but the valid tokens themselves may be
// accepted, refusals are *Error with a Reason, and no message echoes the
// token.
func FuzzVerify(f *testing.F) {
	fix := fuzzVerifySetup(f)
	for _, s := range parseSeeds() {
		f.Add(s, uint16(0), byte(0))
	}
	for _, g := range fix.good {
		f.Add(g, uint16(0), byte(0))
		parts := strings.Split(g, ".")
		h, p, s := parts[0], parts[1], parts[2]
		f.Add(h+"."+p+".", uint16(len(h)), byte('.'))
		f.Add(h+"."+p+"."+s+"=", uint16(len(g)-1), byte('A'))
		f.Add(tamperString(h, p, s), uint16(len(h)+1), byte('e'))
	}
	// Byte flips in header, payload, signature, and on the dots.
	for _, pos := range []uint16{0, 5, 37, 60, 120, 200, 300, 400, 500, 600, 700, 800} {
		f.Add("", pos, byte('A'))
		f.Add("", pos, byte('.'))
	}

	f.Fuzz(func(t *testing.T, raw string, pos uint16, val byte) {
		candidates := []string{raw}
		for _, g := range fix.good {
			b := []byte(g)
			b[int(pos)%len(b)] = val
			candidates = append(candidates, string(b))
		}
		// A fresh Verifier per input keeps runs independent of each
		// other; the processor holds no state.
		v := NewVerifier([]Processor{fix.processor}, map[string]time.Duration{"corp": 5 * time.Minute}, nil, fixedClock(testClock))
		ctx := context.Background()
		for _, c := range candidates {
			id, err := v.Verify(ctx, c)
			if err == nil {
				if id == nil {
					t.Fatalf("Verify returned neither identity nor error for %q", c)
				}
				if !fix.isGood(c) {
					t.Fatalf("accepted a token that is none of the valid ones: %q (identity %+v)", c, id)
				}
				if id.Username != "alice@example.com" {
					t.Fatalf("a valid token gave user %q", id.Username)
				}
				continue
			}
			if ReasonOf(err) == reasonUnclassified {
				t.Fatalf("refusal is not an *Error with a Reason: %T %v", err, err)
			}
			if IsTemporary(err) {
				t.Fatalf("static keys gave a temporary error: %v", err)
			}
			checkNoEcho(t, c, err.Error())
		}
	})
}

// isGood reports whether raw is exactly one of the valid tokens: other
// spellings of the same bytes (non-canonical base64url) are refused too;
// testdata/fuzz/FuzzVerify holds such a spelling the fuzzer found.
func (fix *fuzzVerifyFixture) isGood(raw string) bool {
	for _, g := range fix.good {
		if raw == g {
			return true
		}
	}
	return false
}

// tamperString swaps the payload's "sub" claim by hand, keeping the
// signature, as a seed the fuzzer can build on.
func tamperString(h, p, s string) string {
	dec, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return h + "." + p + "." + s
	}
	return h + "." + b64(strings.Replace(string(dec), `"u-123"`, `"admin"`, 1)) + "." + s
}
