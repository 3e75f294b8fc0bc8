package oauth

import (
	"context"

	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/go-jose/go-jose/v4"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoadOrCreateSealKey reads the seal key kept at path (base64, mode 0600),
// creating it on first use. It is for a single process: replicas need
// broker.seal_key in their configuration.
func LoadOrCreateSealKey(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("oauth: seal key directory: %w", err)
	}
	key := make([]byte, SealKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("oauth: writing seal key %s: %w", path, err)
		}
		return key, nil
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("oauth: creating seal key %s: %w", path, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("oauth: seal key %s is readable by others (mode %04o): chmod 600 it", path, info.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) != SealKeySize {
		return nil, fmt.Errorf("oauth: seal key %s is not %d bytes in base64; remove it to make a new one (pending sign-ins and refresh tokens then stop working)", path, SealKeySize)
	}
	return key, nil
}

// VerificationKeys adapts the broker's signing keys to the token
// verifier's key source.
func VerificationKeys(k Keys) interface {
	Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error)
} {
	return keySource{k}
}

type keySource struct{ ring Keys }

// Keys returns the published keys with id kid (all when kid is empty).
func (s keySource) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	var out []jose.JSONWebKey
	for _, k := range s.ring.Public() {
		if kid == "" || k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out, nil
}
