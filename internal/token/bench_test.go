package token

import (
	"context"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Benchmarks for the token path; figures and how to read them are in
// bench/README.md. Run them with `make bench`.

// benchAlgorithms are the algorithms compared in the cold benchmarks.
var benchAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

// benchToken returns a signing key for alg and a token it signed that the
// test processor accepts at testClock.
func benchToken(b *testing.B, alg jose.SignatureAlgorithm) (*signingKey, string) {
	b.Helper()
	k := newSigningKey(b, alg, string(alg)+"-1")
	return k, k.sign(b, validClaims())
}

// BenchmarkVerifyCached is Verifier.Verify on a token already in the
// cache: hash, LRU lookup, expiry check.
func BenchmarkVerifyCached(b *testing.B) {
	k, raw := benchToken(b, jose.RS256)
	v := newTestVerifier(b, jwtConfig(b, k), fixedClock(testClock))
	ctx := context.Background()
	if _, err := v.Verify(ctx, raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCachedParallel is BenchmarkVerifyCached from every
// GOMAXPROCS goroutine at once: the cache's lock under contention.
func BenchmarkVerifyCachedParallel(b *testing.B) {
	k, raw := benchToken(b, jose.RS256)
	v := newTestVerifier(b, jwtConfig(b, k), fixedClock(testClock))
	ctx := context.Background()
	if _, err := v.Verify(ctx, raw); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(ctx, raw); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyCold is a full verification through our stack without
// the cache: Verifier.verify, the path a cache miss takes (Parse, routing
// by Accepts, the jwt processor's algorithm and claim checks, key lookup,
// signature, required claims and identity), with the processor built by
// New from a jwt configuration with inline keys.
func BenchmarkVerifyCold(b *testing.B) {
	for _, alg := range benchAlgorithms {
		b.Run(string(alg), func(b *testing.B) {
			k, raw := benchToken(b, alg)
			v := newTestVerifier(b, jwtConfig(b, k), fixedClock(testClock))
			ctx := context.Background()
			if _, err := v.verify(ctx, raw); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := v.verify(ctx, raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// bareGoJose returns go-jose alone parsing raw and verifying it with pub
// into a claims map: no claim checks, key selection or identity.
func bareGoJose(raw string, alg jose.SignatureAlgorithm, pub any) func() error {
	algs := []jose.SignatureAlgorithm{alg}
	return func() error {
		tok, err := jwt.ParseSigned(raw, algs)
		if err != nil {
			return err
		}
		var claims map[string]any
		return tok.Claims(pub, &claims)
	}
}

// BenchmarkVerifyBareGoJose is the floor for BenchmarkVerifyCold: go-jose
// alone on the same token with the right public key (see bareGoJose).
func BenchmarkVerifyBareGoJose(b *testing.B) {
	for _, alg := range benchAlgorithms {
		b.Run(string(alg), func(b *testing.B) {
			k, raw := benchToken(b, alg)
			verifyBare := bareGoJose(raw, alg, k.Public.Key)
			if err := verifyBare(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := verifyBare(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyOverhead measures BenchmarkVerifyCold and
// BenchmarkVerifyBareGoJose in the same loop, alternating, so that both see
// the same machine load; on a shared machine the separate benchmarks can
// drift by more than the overhead being measured. It reports each side's
// ns/op and the overhead of ours over bare go-jose in percent.
func BenchmarkVerifyOverhead(b *testing.B) {
	for _, alg := range benchAlgorithms {
		b.Run(string(alg), func(b *testing.B) {
			k, raw := benchToken(b, alg)
			v := newTestVerifier(b, jwtConfig(b, k), fixedClock(testClock))
			ctx := context.Background()
			ours := func() error { _, err := v.verify(ctx, raw); return err }
			bare := bareGoJose(raw, alg, k.Public.Key)
			var tOurs, tBare time.Duration
			timed := func(f func() error, total *time.Duration) {
				start := time.Now()
				err := f()
				*total += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
			}
			if err := ours(); err != nil {
				b.Fatal(err)
			}
			if err := bare(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			n := 0
			for b.Loop() {
				if n%2 == 0 {
					timed(ours, &tOurs)
					timed(bare, &tBare)
				} else {
					timed(bare, &tBare)
					timed(ours, &tOurs)
				}
				n++
			}
			b.ReportMetric(float64(tOurs.Nanoseconds())/float64(n), "ours-ns/op")
			b.ReportMetric(float64(tBare.Nanoseconds())/float64(n), "bare-ns/op")
			b.ReportMetric(100*(float64(tOurs)/float64(tBare)-1), "overhead-%")
		})
	}
}
