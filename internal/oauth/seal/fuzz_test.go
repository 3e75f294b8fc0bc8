package seal

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzOpen: no input opens unless it is a sealed value exactly as Seal
// produced it, and nothing panics.
func FuzzOpen(f *testing.F) {
	// A key of this process: seeds sealed by another fuzzing process
	// must not open here either.
	key := make([]byte, KeySize)
	rand.Read(key)
	s, err := New(key)
	if err != nil {
		f.Fatal(err)
	}
	valid, err := s.Seal("code", map[string]string{"id": "x"}, time.Minute)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, 0, byte(0))
	f.Add(valid, len(valid)/2, byte(1))
	f.Add("", 0, byte(0))
	f.Add("AQ", 0, byte(0))
	f.Fuzz(func(t *testing.T, blob string, at int, flip byte) {
		if blob == valid && flip != 0 && at >= 0 && at < len(blob) {
			b := []byte(blob)
			b[at] ^= flip
			blob = string(b)
		}
		var v map[string]string
		err := s.Open("code", blob, &v)
		if blob != valid && err == nil {
			t.Fatalf("a blob that Seal did not produce opened: %q", blob)
		}
		if err != nil && !errors.Is(err, ErrSealed) && !errors.Is(err, ErrExpired) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		// Another purpose never opens it.
		if s.Open("refresh", blob, &v) == nil {
			t.Fatalf("opened under another purpose: %q", blob)
		}
	})
}

// A sealed value has one spelling: the spare bits of its last base64
// character are not ignored (a code or refresh token could otherwise be
// presented in two forms).
func TestSealedBlobHasOneSpelling(t *testing.T) {
	s, _ := New(make([]byte, KeySize))
	for i := 0; i < 20; i++ {
		blob, err := s.Seal("code", strings.Repeat("x", i), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", blob[len(blob)-1])
		if len(blob)%4 == 0 { // no spare bits
			continue
		}
		alt := blob[:len(blob)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last^1])
		var v string
		if err := s.Open("code", alt, &v); err == nil {
			t.Fatalf("%q opened as well as %q", alt, blob)
		}
	}
}
