// Package keyring keeps rotating ES256 signing keys in a file.
//
// A key file holds the signing key and the keys it replaced, newest first,
// as private JWKs (EC P-256) in JSON:
//
//	{"keys": [
//	  {"jwk": {...}, "created": "..."},
//	  {"jwk": {...}, "created": "...", "retired": "...", "publish_until": "..."}
//	]}
//
// Only the first key signs; the others stay published until their
// publish_until, so that tokens they signed keep verifying until they
// expire. The file has mode 0600, and a file that others may read is
// refused: it holds private keys. It is replaced atomically on rotation, so
// that several processes may share it.
package keyring

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
)

// Algorithm is the signature algorithm of every key in a key file.
const Algorithm = jose.ES256

// CheckInterval is how often a Ring looks at its file for changes. Tests
// may lower it before calling Open.
var CheckInterval = time.Second

// maxKeys bounds the keys a file keeps, however often keys are rotated.
const maxKeys = 10

type keyFile struct {
	Keys []storedKey `json:"keys"`
}

type storedKey struct {
	JWK     jose.JSONWebKey `json:"jwk"`
	Created time.Time       `json:"created"`
	// Retired is when a newer key took over; zero for the signing key.
	Retired time.Time `json:"retired,omitzero"`
	// PublishUntil is when a retired key stops being published.
	PublishUntil time.Time `json:"publish_until,omitzero"`
}

func newStoredKey(now time.Time) (storedKey, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return storedKey{}, err
	}
	jwk := jose.JSONWebKey{Key: priv, Algorithm: string(Algorithm), Use: "sig"}
	thumb, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return storedKey{}, err
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(thumb)
	return storedKey{JWK: jwk, Created: now.UTC()}, nil
}

func (k *storedKey) private() *ecdsa.PrivateKey { return k.JWK.Key.(*ecdsa.PrivateKey) }

// load reads and checks the key file at path.
func load(path string) (*keyFile, fs.FileInfo, error) {
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
		return nil, nil, fmt.Errorf("key file %s is readable by others (mode %04o); it holds private keys: chmod 600 it", path, info.Mode().Perm())
	}
	var kf keyFile
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&kf); err != nil {
		return nil, nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if len(kf.Keys) == 0 {
		return nil, nil, fmt.Errorf("key file %s has no keys", path)
	}
	for i, k := range kf.Keys {
		priv, ok := k.JWK.Key.(*ecdsa.PrivateKey)
		if !ok || priv.Curve != elliptic.P256() || k.JWK.KeyID == "" {
			return nil, nil, fmt.Errorf("key file %s: key %d is not a private EC P-256 key with a kid", path, i)
		}
		if (i == 0) != k.Retired.IsZero() {
			return nil, nil, fmt.Errorf("key file %s: only the first key may be the signing key (key %d)", path, i)
		}
	}
	return &kf, info, nil
}

// loadOrCreate loads the key file at path, first making it with a new
// signing key if it does not exist.
func loadOrCreate(path string, now time.Time) (*keyFile, fs.FileInfo, error) {
	kf, info, err := load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return kf, info, err
	}
	if err := create(path, now); err != nil {
		return nil, nil, err
	}
	return load(path)
}

func encode(kf *keyFile) ([]byte, error) {
	data, err := json.MarshalIndent(kf, "", "  ")
	return append(data, '\n'), err
}

// create makes a key file with a new signing key unless one exists
// (another process may have made it first).
func create(path string, now time.Time) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	k, err := newStoredKey(now)
	if err != nil {
		return err
	}
	data, err := encode(&keyFile{Keys: []storedKey{k}})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating key file %s: %w", path, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("creating key file %s: %w", path, err)
	}
	return nil
}

// write replaces the file at path atomically with kf, mode 0600.
func write(path string, kf *keyFile) error {
	data, err := encode(kf)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("key file %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing key file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing key file %s: %w", path, err)
	}
	return nil
}

// Rotate makes a new signing key in the key file at path, creating the file
// if it does not exist. The previous signing key stops signing but stays
// published for keepOld, which should be at least the lifetime of the tokens
// it signed, so that those tokens keep verifying; keys past their time are
// dropped, and at most 10 keys are kept. A Ring open on the file, in this or
// another process, uses the new key within CheckInterval. Rotate returns the
// new key's id.
func Rotate(path string, keepOld time.Duration) (kid string, err error) {
	return rotate(path, keepOld, time.Now())
}

func rotate(path string, keepOld time.Duration, now time.Time) (string, error) {
	kf, _, err := loadOrCreate(path, now)
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
	if err := write(path, kf); err != nil {
		return "", err
	}
	return k.JWK.KeyID, nil
}

// A Ring serves the keys of one key file and reloads them when the file
// changes, looking at it at most once every CheckInterval. A Ring is safe
// for concurrent use.
type Ring struct {
	path    string
	now     func() time.Time
	check   time.Duration
	onError func(error)

	mu        sync.Mutex
	info      fs.FileInfo
	lastCheck time.Time
	keys      []storedKey
}

// Open opens the key file at path, creating it (and its directory) with a
// new signing key if it does not exist. now is the clock by which keys
// expire and the file is checked for changes. When a changed file cannot be
// loaded, the Ring keeps the keys it has and reports the error to onError,
// which may be nil.
func Open(path string, now func() time.Time, onError func(error)) (*Ring, error) {
	kf, info, err := loadOrCreate(path, now())
	if err != nil {
		return nil, err
	}
	if onError == nil {
		onError = func(error) {}
	}
	return &Ring{
		path:      path,
		now:       now,
		check:     CheckInterval,
		onError:   onError,
		info:      info,
		lastCheck: now(),
		keys:      kf.Keys,
	}, nil
}

// refresh reloads the file when it changed; a broken file keeps the keys in
// use and is reported. r.mu must be held.
func (r *Ring) refresh() {
	now := r.now()
	if now.Sub(r.lastCheck) < r.check {
		return
	}
	r.lastCheck = now
	info, err := os.Stat(r.path)
	if err != nil {
		r.onError(fmt.Errorf("key file: %w; keeping the keys in use", err))
		return
	}
	if os.SameFile(info, r.info) && info.ModTime().Equal(r.info.ModTime()) && info.Size() == r.info.Size() {
		return
	}
	kf, info, err := load(r.path)
	if err != nil {
		r.onError(fmt.Errorf("%w; keeping the keys in use", err))
		return
	}
	r.keys, r.info = kf.Keys, info
}

// Signing returns the current signing key and its id, first reloading the
// file if it changed.
func (r *Ring) Signing() (kid string, key *ecdsa.PrivateKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refresh()
	k := &r.keys[0]
	return k.JWK.KeyID, k.private()
}

// Public returns the public keys to publish now: the signing key and the
// retired keys not yet past their publish_until, newest first, each with
// its KeyID, Algorithm "ES256" and Use "sig". It first reloads the file if
// it changed.
func (r *Ring) Public() []jose.JSONWebKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refresh()
	now := r.now()
	var keys []jose.JSONWebKey
	for i := range r.keys {
		k := &r.keys[i]
		if !k.Retired.IsZero() && !k.PublishUntil.After(now) {
			continue
		}
		keys = append(keys, jose.JSONWebKey{
			Key:       &k.private().PublicKey,
			KeyID:     k.JWK.KeyID,
			Algorithm: string(Algorithm),
			Use:       "sig",
		})
	}
	return keys
}
