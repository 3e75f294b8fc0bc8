package seal

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
	"time"
)

type pending struct {
	ClientID string `json:"client_id"`
	Redirect string `json:"redirect_uri"`
}

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func mustSealer(t *testing.T, key []byte) *Sealer {
	t.Helper()
	s, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealerRoundTripAcrossReplicas(t *testing.T) {
	a, b := mustSealer(t, testKey(7)), mustSealer(t, testKey(7))
	in := pending{ClientID: "https://c.example/m.json", Redirect: "http://127.0.0.1:5000/cb"}
	blob, err := a.Seal("pending", in, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var out pending
	if err := b.Open("pending", blob, &out); err != nil {
		t.Fatalf("replica b cannot open a's blob: %v", err)
	}
	if out != in {
		t.Fatalf("got %+v want %+v", out, in)
	}
	blob2, _ := b.Seal("pending", in, time.Minute)
	if blob2 == blob {
		t.Fatal("two seals of the same value are identical (nonce reuse?)")
	}
	if err := a.Open("pending", blob2, &out); err != nil {
		t.Fatalf("replica a cannot open b's blob: %v", err)
	}
}

func TestSealerRefusals(t *testing.T) {
	s := mustSealer(t, testKey(1))
	blob, err := s.Seal("code", pending{ClientID: "x"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(blob)
	flip := func(i int) string {
		c := append([]byte(nil), raw...)
		c[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(c)
	}
	var out pending
	cases := []struct {
		name, purpose, blob string
		s                   *Sealer
		want                error
	}{
		{"wrong purpose", "client", blob, s, ErrSealed},
		{"wrong key", "code", blob, mustSealer(t, testKey(2)), ErrSealed},
		{"tampered ciphertext", "code", flip(len(raw) - 20), s, ErrSealed},
		{"tampered tag", "code", flip(len(raw) - 1), s, ErrSealed},
		{"tampered nonce", "code", flip(3), s, ErrSealed},
		{"tampered version", "code", flip(0), s, ErrSealed},
		{"truncated", "code", blob[:len(blob)-5], s, ErrSealed},
		{"too short", "code", "AQ", s, ErrSealed},
		{"empty", "code", "", s, ErrSealed},
		{"not base64", "code", "!!!" + blob, s, ErrSealed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.s.Open(c.purpose, c.blob, &out); !errors.Is(err, c.want) {
				t.Fatalf("got %v want %v", err, c.want)
			}
		})
	}
	if err := s.Open("", blob, &out); err == nil {
		t.Fatal("empty purpose accepted")
	}
}

func TestSealerExpiry(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := mustSealer(t, testKey(3))
	s.Now = func() time.Time { return now }
	blob, err := s.Seal("code", pending{ClientID: "x"}, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var out pending
	now = now.Add(59 * time.Second)
	if err := s.Open("code", blob, &out); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	now = now.Add(time.Second)
	if err := s.Open("code", blob, &out); !errors.Is(err, ErrExpired) {
		t.Fatalf("at expiry: got %v want ErrExpired", err)
	}
	if _, err := s.Seal("code", 1, 0); err == nil {
		t.Fatal("zero ttl accepted")
	}
}

func TestNewSealerKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("key of %d bytes accepted", n)
		}
	}
}
