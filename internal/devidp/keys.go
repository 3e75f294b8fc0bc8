package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The key file holds the signing key and the keys it replaced, newest
// first, as private JWKs (EC P-256, ES256). Only the first signs; the others
// stay published in the JWKS until publish_until, so that tokens they signed
// keep verifying until they expire.
type keyFile struct {
	Keys []storedKey `json:"keys"`
}

type storedKey struct {
	JWK     jose.JSONWebKey `json:"jwk"`
	Created time.Time       `json:"created"`
	// Retired is when a newer key took over; zero for the signing key.
	Retired time.Time `json:"retired,omitzero"`
	// PublishUntil is when a retired key leaves the JWKS.
	PublishUntil time.Time `json:"publish_until,omitzero"`
}

const keyAlgorithm = jose.ES256

// maxKeys bounds the keys a file keeps, however often keys are rotated.
const maxKeys = 10

func newStoredKey(now time.Time) (storedKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return storedKey{}, err
	}
	jwk := jose.JSONWebKey{Key: priv, Algorithm: string(keyAlgorithm), Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return storedKey{}, err
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	return storedKey{JWK: jwk, Created: now.UTC()}, nil
}

// loadKeyFile reads and checks a key file. A file that others may read is
// refused: it holds private keys.
func loadKeyFile(path string) (*keyFile, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if info.Mode().Perm()&0o077 != 0 {
		return nil, nil, fmt.Errorf("devidp: key file %s is readable by others (mode %04o); it holds private keys: chmod 600 it", path, info.Mode().Perm())
	}
	var kf keyFile
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kf); err != nil {
		return nil, nil, fmt.Errorf("devidp: key file %s: %w", path, err)
	}
	if len(kf.Keys) == 0 {
		return nil, nil, fmt.Errorf("devidp: key file %s has no keys", path)
	}
	for i, k := range kf.Keys {
		priv, ok := k.JWK.Key.(*ecdsa.PrivateKey)
		if !ok || priv.Curve != elliptic.P256() || k.JWK.KeyID == "" {
			return nil, nil, fmt.Errorf("devidp: key file %s: key %d is not a private EC P-256 key with a kid", path, i)
		}
		if (i == 0) != k.Retired.IsZero() {
			return nil, nil, fmt.Errorf("devidp: key file %s: only the first key may be the signing key (key %d)", path, i)
		}
	}
	return &kf, info, nil
}

// writeKeyFile replaces path atomically with kf, mode 0600.
func writeKeyFile(path string, kf *keyFile) error {
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("devidp: key file directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".dev-idp-keys-*")
	if err != nil {
		return fmt.Errorf("devidp: writing key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("devidp: writing key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("devidp: writing key file: %w", err)
	}
	return nil
}

// createKeyFile makes a key file with a new signing key unless one exists
// (another process may have made it first).
func createKeyFile(path string, now time.Time) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("devidp: key file directory: %w", err)
	}
	k, err := newStoredKey(now)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(&keyFile{Keys: []storedKey{k}}, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("devidp: creating key file: %w", err)
	}
	_, err = f.Write(append(data, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("devidp: creating key file: %w", err)
	}
	return nil
}

// RotateKey makes a new signing key in the key file at path. The previous
// signing key stops signing but stays published for keepOld (at least the
// lifetime of the tokens it signed, dev_idp.token_ttl), so that those
// tokens keep verifying; keys past their time are dropped. A running
// development IdP notices the change within a second. It returns the new
// key's id.
func RotateKey(path string, keepOld time.Duration) (kid string, err error) {
	return rotateKey(path, keepOld, time.Now())
}

func rotateKey(path string, keepOld time.Duration, now time.Time) (string, error) {
	kf, _, err := loadKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createKeyFile(path, now); err != nil {
			return "", err
		}
		kf, _, err = loadKeyFile(path)
	}
	if err != nil {
		return "", err
	}
	k, err := newStoredKey(now)
	if err != nil {
		return "", err
	}
	now = now.UTC()
	kf.Keys[0].Retired = now
	kf.Keys[0].PublishUntil = now.Add(keepOld)
	keys := []storedKey{k}
	for _, old := range kf.Keys {
		if old.PublishUntil.After(now) && len(keys) < maxKeys {
			keys = append(keys, old)
		}
	}
	kf.Keys = keys
	if err := writeKeyFile(path, kf); err != nil {
		return "", err
	}
	return k.JWK.KeyID, nil
}

// keyring serves the keys of one key file to the OpenID provider and
// reloads them when the file changes (clickgate idp rotate-key).
type keyring struct {
	path  string
	now   func() time.Time
	check time.Duration

	mu        sync.Mutex
	info      fs.FileInfo
	lastCheck time.Time
	signing   *signingKey
	published []storedKey
	onError   func(error)
}

// keyCheckInterval is how often the key file is looked at for changes.
var keyCheckInterval = time.Second

func openKeyring(path string, now func() time.Time, onError func(error)) (*keyring, error) {
	kr := &keyring{path: path, now: now, check: keyCheckInterval, onError: onError}
	kf, info, err := loadKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createKeyFile(path, now()); err != nil {
			return nil, err
		}
		kf, info, err = loadKeyFile(path)
	}
	if err != nil {
		return nil, err
	}
	kr.use(kf, info)
	kr.lastCheck = now()
	return kr, nil
}

func (kr *keyring) use(kf *keyFile, info fs.FileInfo) {
	k := kf.Keys[0]
	kr.signing = &signingKey{id: k.JWK.KeyID, key: k.JWK.Key.(*ecdsa.PrivateKey)}
	kr.published = kf.Keys
	kr.info = info
}

// refresh reloads the file when it changed; a broken file keeps the keys
// in use and is reported.
func (kr *keyring) refresh() {
	now := kr.now()
	if now.Sub(kr.lastCheck) < kr.check {
		return
	}
	kr.lastCheck = now
	info, err := os.Stat(kr.path)
	if err != nil {
		kr.onError(fmt.Errorf("devidp: key file: %w; keeping the keys in use", err))
		return
	}
	if os.SameFile(info, kr.info) && info.ModTime().Equal(kr.info.ModTime()) && info.Size() == kr.info.Size() {
		return
	}
	kf, info, err := loadKeyFile(kr.path)
	if err != nil {
		kr.onError(fmt.Errorf("%w; keeping the keys in use", err))
		return
	}
	kr.use(kf, info)
}

func (kr *keyring) signingKey() *signingKey {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	kr.refresh()
	return kr.signing
}

func (kr *keyring) publicKeys() []op.Key {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	kr.refresh()
	now := kr.now()
	var keys []op.Key
	for _, k := range kr.published {
		if !k.Retired.IsZero() && !k.PublishUntil.After(now) {
			continue
		}
		keys = append(keys, &publicKey{id: k.JWK.KeyID, key: &k.JWK.Key.(*ecdsa.PrivateKey).PublicKey})
	}
	return keys
}

type signingKey struct {
	id  string
	key *ecdsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return keyAlgorithm }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct {
	id  string
	key *ecdsa.PublicKey
}

func (k *publicKey) ID() string                         { return k.id }
func (k *publicKey) Algorithm() jose.SignatureAlgorithm { return keyAlgorithm }
func (k *publicKey) Use() string                        { return "sig" }
func (k *publicKey) Key() any                           { return k.key }
