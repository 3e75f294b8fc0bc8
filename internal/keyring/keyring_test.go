package keyring

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/testkit"
)

// epoch is where the tests' clocks start.
var epoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// errs collects what a Ring reports.
type errs struct{ list []error }

func (e *errs) report(err error) { e.list = append(e.list, err) }

func (e *errs) take() []error {
	l := e.list
	e.list = nil
	return l
}

func open(t *testing.T, path string, c *testkit.Clock) (*Ring, *errs) {
	t.Helper()
	e := &errs{}
	r, err := Open(path, c.Now, e.report)
	if err != nil {
		t.Fatal(err)
	}
	return r, e
}

func kids(r *Ring) []string {
	var out []string
	for _, k := range r.Public() {
		out = append(out, k.KeyID)
	}
	return out
}

func readFile(t *testing.T, path string) *keyFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var kf keyFile
	if err := json.Unmarshal(data, &kf); err != nil {
		t.Fatal(err)
	}
	return &kf
}

func mustMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != want {
		t.Fatalf("%s has mode %04o, want %04o", path, info.Mode().Perm(), want)
	}
}

func TestOpenCreatesAndKeeps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "keys.json")
	c := testkit.NewClock(epoch)
	r, _ := open(t, path, c)
	mustMode(t, path, 0o600)
	mustMode(t, filepath.Dir(path), 0o700)

	kid, key := r.Signing()
	if kid == "" || key == nil || key.Curve != elliptic.P256() {
		t.Fatalf("signing key %q %v, want a P-256 key with a kid", kid, key)
	}
	pub := r.Public()
	if len(pub) != 1 {
		t.Fatalf("%d public keys, want 1", len(pub))
	}
	k := pub[0]
	if k.KeyID != kid || k.Algorithm != "ES256" || k.Use != "sig" || !k.Valid() || !k.IsPublic() {
		t.Fatalf("public key %+v, want the public half of %s, ES256, sig", k, kid)
	}
	if p, ok := k.Key.(*ecdsa.PublicKey); !ok || !p.Equal(&key.PublicKey) {
		t.Fatalf("public key %T is not the signing key's", k.Key)
	}
	kf := readFile(t, path)
	if len(kf.Keys) != 1 || kf.Keys[0].JWK.KeyID != kid || !kf.Keys[0].Created.Equal(c.Now()) {
		t.Fatalf("key file %+v, want the one key %s made now", kf, kid)
	}

	// Another Ring on the same file, as after a restart, has the same key.
	again, _ := open(t, path, c)
	if k, _ := again.Signing(); k != kid {
		t.Fatalf("reopened: signing key %s, want %s", k, kid)
	}
}

// writeKeys writes a key file as it would be found on disk.
func writeKeys(t *testing.T, path string, mode os.FileMode, v any) {
	t.Helper()
	data, ok := v.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// replace puts a new file at path, as a rotation does.
func replace(t *testing.T, path string, mode os.FileMode, data []byte) {
	t.Helper()
	tmp := path + ".new"
	writeKeys(t, tmp, mode, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefuses(t *testing.T) {
	now := epoch
	key := func(retired bool) storedKey {
		k, err := newStoredKey(now)
		if err != nil {
			t.Fatal(err)
		}
		if retired {
			k.Retired, k.PublishUntil = now, now.Add(time.Hour)
		}
		return k
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := &keyFile{Keys: []storedKey{key(false), key(true)}}
	publicOnly := key(false)
	publicOnly.JWK = publicOnly.JWK.Public()
	noKid := key(false)
	noKid.JWK.KeyID = ""
	otherCurve := key(false)
	otherCurve.JWK.Key = p384

	for _, tc := range []struct {
		name string
		mode os.FileMode
		file any
		want string
	}{
		{"readable by others", 0o644, good, "is readable by others (mode 0644); it holds private keys: chmod 600 it"},
		{"readable by the group", 0o640, good, "(mode 0640)"},
		{"writable by others", 0o602, good, "(mode 0602)"},
		{"not JSON", 0o600, []byte("not json"), "invalid character"},
		{"empty", 0o600, []byte(""), "EOF"},
		{"unknown field", 0o600, []byte(`{"keys": [], "extra": 1}`), `unknown field "extra"`},
		{"no keys", 0o600, &keyFile{}, "has no keys"},
		{"public key", 0o600, &keyFile{Keys: []storedKey{publicOnly}}, "key 0 is not a private EC P-256 key with a kid"},
		{"no kid", 0o600, &keyFile{Keys: []storedKey{noKid}}, "key 0 is not a private EC P-256 key with a kid"},
		{"P-384", 0o600, &keyFile{Keys: []storedKey{otherCurve}}, "key 0 is not a private EC P-256 key with a kid"},
		{"retired first key", 0o600, &keyFile{Keys: []storedKey{key(true)}}, "only the first key may be the signing key (key 0)"},
		{"two signing keys", 0o600, &keyFile{Keys: []storedKey{key(false), key(false)}}, "only the first key may be the signing key (key 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			writeKeys(t, path, tc.mode, tc.file)
			before, _ := os.ReadFile(path)
			_, err := Open(path, testkit.NewClock(epoch).Now, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open: %v, want an error naming the file and saying %q", err, tc.want)
			}
			if _, err := Rotate(path, time.Hour); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Rotate: %v, want an error saying %q", err, tc.want)
			}
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Fatal("a refused file was changed")
			}
		})
	}

	// The file as written above is accepted once private.
	path := filepath.Join(t.TempDir(), "keys.json")
	writeKeys(t, path, 0o600, good)
	r, err := Open(path, func() time.Time { return now }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kids(r), []string{good.Keys[0].JWK.KeyID, good.Keys[1].JWK.KeyID}; !slices.Equal(got, want) {
		t.Fatalf("published %v, want %v", got, want)
	}
}

func TestOpenUnusableDirectory(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	writeKeys(t, blocker, 0o600, []byte("x"))
	path := filepath.Join(blocker, "keys.json")
	if _, err := Open(path, time.Now, nil); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open under a file: %v, want an error naming %s", err, path)
	}
	if _, err := Rotate(path, time.Hour); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Rotate under a file: %v, want an error naming %s", err, path)
	}
}

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	c := testkit.NewClock(epoch)
	r, _ := open(t, path, c)
	first, _ := r.Signing()

	second, err := rotate(path, time.Hour, c.Now())
	if err != nil {
		t.Fatal(err)
	}
	mustMode(t, path, 0o600)
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the directory holds %d files after a rotation, want only the key file", len(entries))
	}
	kf := readFile(t, path)
	if len(kf.Keys) != 2 || kf.Keys[0].JWK.KeyID != second || kf.Keys[1].JWK.KeyID != first ||
		!kf.Keys[1].Retired.Equal(c.Now()) || !kf.Keys[1].PublishUntil.Equal(c.Now().Add(time.Hour)) {
		t.Fatalf("key file after rotation %+v, want %s then %s retired now until in an hour", kf, second, first)
	}

	// The Ring sees the new file at its next look.
	c.Advance(CheckInterval)
	if kid, _ := r.Signing(); kid != second {
		t.Fatalf("signing key %s after rotation, want %s", kid, second)
	}
	if got := kids(r); !slices.Equal(got, []string{second, first}) {
		t.Fatalf("published %v, want [%s %s]", got, second, first)
	}

	// A retired key leaves at its publish_until, from the JWKS at once and
	// from the file at the next rotation.
	c.Advance(time.Hour - CheckInterval - time.Nanosecond)
	if got := kids(r); !slices.Equal(got, []string{second, first}) {
		t.Fatalf("published %v just before publish_until, want [%s %s]", got, second, first)
	}
	c.Advance(time.Nanosecond)
	if got := kids(r); !slices.Equal(got, []string{second}) {
		t.Fatalf("published %v at publish_until, want [%s]", got, second)
	}
	third, err := rotate(path, 0, c.Now())
	if err != nil {
		t.Fatal(err)
	}
	if kf := readFile(t, path); len(kf.Keys) != 1 || kf.Keys[0].JWK.KeyID != third {
		t.Fatalf("key file %+v, want only %s (the others are past publish_until)", kf, third)
	}
}

func TestRotateCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "keys.json")
	kid, err := Rotate(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	mustMode(t, path, 0o600)
	kf := readFile(t, path)
	if len(kf.Keys) != 2 || kf.Keys[0].JWK.KeyID != kid || kf.Keys[1].Retired.IsZero() {
		t.Fatalf("key file %+v, want the new signing key %s and the one made for the new file", kf, kid)
	}
}

func TestRotateKeepsAtMostMaxKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	c := testkit.NewClock(epoch)
	var made []string
	for range maxKeys + 5 {
		kid, err := rotate(path, 24*time.Hour, c.Now())
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, kid)
		c.Advance(time.Minute)
	}
	kf := readFile(t, path)
	var got []string
	for _, k := range kf.Keys {
		got = append(got, k.JWK.KeyID)
	}
	slices.Reverse(made)
	if !slices.Equal(got, made[:maxKeys]) {
		t.Fatalf("key file holds %v, want the %d newest %v", got, maxKeys, made[:maxKeys])
	}
}

func TestReloadAtMostEveryCheckInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	c := testkit.NewClock(epoch)
	r, _ := open(t, path, c)
	first, _ := r.Signing()
	second, err := Rotate(path, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(CheckInterval - time.Nanosecond)
	if kid, _ := r.Signing(); kid != first {
		t.Fatalf("signing key %s before the check interval passed, want still %s", kid, first)
	}
	c.Advance(time.Nanosecond)
	if kid, _ := r.Signing(); kid != second {
		t.Fatalf("signing key %s once the check interval passed, want %s", kid, second)
	}
}

func TestBrokenFileKeepsKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	c := testkit.NewClock(epoch)
	r, reported := open(t, path, c)
	kid, _ := r.Signing()
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name  string
		spoil func()
		want  string
	}{
		{"readable by others", func() { replace(t, path, 0o644, good) }, "chmod 600"},
		{"garbage", func() { replace(t, path, 0o600, []byte("{garbage")) }, "invalid character"},
		{"removed", func() { os.Remove(path) }, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spoil()
			c.Advance(CheckInterval)
			if k, _ := r.Signing(); k != kid {
				t.Fatalf("signing key %s, want still %s", k, kid)
			}
			if got := kids(r); !slices.Equal(got, []string{kid}) {
				t.Fatalf("published %v, want still [%s]", got, kid)
			}
			errs := reported.take()
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) ||
				!strings.Contains(errs[0].Error(), path) || !strings.HasSuffix(errs[0].Error(), "; keeping the keys in use") {
				t.Fatalf("reported %v, want one error naming %s, saying %q and that the keys are kept", errs, path, tc.want)
			}
			replace(t, path, 0o600, good)
		})
	}
}

// TestConcurrentUse is for the race detector: readers while the file is
// rotated.
func TestConcurrentUse(t *testing.T) {
	defer func(d time.Duration) { CheckInterval = d }(CheckInterval)
	CheckInterval = 0
	path := filepath.Join(t.TempDir(), "keys.json")
	r, err := Open(path, time.Now, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				kid, key := r.Signing()
				if kid == "" || key == nil {
					t.Error("no signing key")
					return
				}
				if len(r.Public()) == 0 {
					t.Error("no public keys")
					return
				}
			}
		})
	}
	var last string
	for range 20 {
		if last, err = Rotate(path, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if kid, _ := r.Signing(); kid != last {
		t.Fatalf("signing key %s, want the last rotated %s", kid, last)
	}
}

// TestCreateKeepsAnExistingFile is for two processes starting on a missing
// file at once: the one that creates it second must not replace the first
// one's key.
func TestCreateKeepsAnExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	now := epoch
	if err := create(path, now); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := create(path, now); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("creating an existing key file replaced it")
	}
}
