// Package seal encrypts and authenticates the broker's transient state
// (pending sign-ins, codes, refresh tokens, registered clients) under a
// key its replicas share, so that they need no shared store for it, and
// keeps that key in a file for a single process.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// KeySize is the size of the key given to New.
const KeySize = 32

const sealVersion byte = 1

var (
	// ErrSealed is returned for any blob that does not open: tampered,
	// truncated, another key or another purpose. Callers must not tell
	// these apart to the outside.
	ErrSealed = errors.New("oauth: sealed value is invalid")
	// ErrExpired is returned for an authentic blob whose time is up.
	ErrExpired = errors.New("oauth: sealed value has expired")
)

// Sealer encrypts and authenticates transient state with AES-256-GCM, so
// that replicas sharing the key need no shared store for it. A blob sealed
// for one purpose never opens as another: each purpose has its own
// HKDF-derived key and the purpose is also bound as additional
// authenticated data. It is safe for concurrent use.
type Sealer struct {
	key   []byte
	aeads sync.Map // purpose → cipher.AEAD
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

// New returns a sealer for a 32-byte key.
func New(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("oauth: seal key must be %d bytes, got %d", KeySize, len(key))
	}
	return &Sealer{key: append([]byte(nil), key...), Now: time.Now}, nil
}

type sealedPayload struct {
	Exp  int64           `json:"exp"`
	Data json.RawMessage `json:"d"`
}

// aead returns the cipher of purpose, derived once: sealing and opening
// run on every authorization and token request.
func (s *Sealer) aead(purpose string) (cipher.AEAD, error) {
	if purpose == "" {
		return nil, errors.New("oauth: empty seal purpose")
	}
	if a, ok := s.aeads.Load(purpose); ok {
		return a.(cipher.AEAD), nil
	}
	sub, err := hkdf.Key(sha256.New, s.key, nil, "clickgate/oauth/seal/v1/"+purpose, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(sub)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(block) // safe for concurrent use
	if err != nil {
		return nil, err
	}
	s.aeads.Store(purpose, a)
	return a, nil
}

func aad(purpose string) []byte { return []byte("clickgate-seal-v1:" + purpose) }

// Seal encodes v as JSON and seals it for purpose, valid for ttl. The
// result is URL-safe (base64url without padding).
func (s *Sealer) Seal(purpose string, v any, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		return "", errors.New("oauth: seal ttl must be positive")
	}
	a, err := s.aead(purpose)
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	plain, err := json.Marshal(sealedPayload{Exp: s.Now().Add(ttl).Unix(), Data: data})
	if err != nil {
		return "", err
	}
	out := make([]byte, 1+a.NonceSize(), 1+a.NonceSize()+len(plain)+a.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return "", err
	}
	out = a.Seal(out, out[1:1+a.NonceSize()], plain, aad(purpose))
	return base64.RawURLEncoding.EncodeToString(out), nil
}

// Open authenticates and decrypts blob sealed for purpose into v. It
// returns ErrSealed if the blob is not authentic for this key and purpose
// and ErrExpired if it is authentic but expired.
func (s *Sealer) Open(purpose, blob string, v any) error {
	a, err := s.aead(purpose)
	if err != nil {
		return err
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(blob) // one spelling per blob
	if err != nil || len(raw) < 1+a.NonceSize()+a.Overhead() || raw[0] != sealVersion {
		return ErrSealed
	}
	nonce := raw[1 : 1+a.NonceSize()]
	plain, err := a.Open(nil, nonce, raw[1+a.NonceSize():], aad(purpose))
	if err != nil {
		return ErrSealed
	}
	var p sealedPayload
	if err := json.Unmarshal(plain, &p); err != nil {
		return ErrSealed
	}
	if !s.Now().Before(time.Unix(p.Exp, 0)) {
		return ErrExpired
	}
	if err := json.Unmarshal(p.Data, v); err != nil {
		return fmt.Errorf("oauth: sealed value does not decode: %w", err)
	}
	return nil
}

// Derive returns a value that only holders of the key can compute from
// data, distinct per purpose (HMAC-SHA-256 under an HKDF subkey): used for
// the client secrets of dynamically registered clients, which need no
// storage.
func (s *Sealer) Derive(purpose, data string) string {
	sub, err := hkdf.Key(sha256.New, s.key, nil, "clickgate/oauth/derive/v1/"+purpose, 32)
	if err != nil {
		panic(err) // only for lengths HKDF-SHA-256 cannot produce
	}
	m := hmac.New(sha256.New, sub)
	m.Write([]byte(data))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
