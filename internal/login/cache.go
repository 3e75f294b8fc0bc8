package login

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// ConfigDirEnv overrides where clickgate keeps its sign-ins.
const ConfigDirEnv = "CLICKGATE_CONFIG_DIR"

// DefaultDir is $CLICKGATE_CONFIG_DIR, else clickgate in the user's
// configuration directory (os.UserConfigDir: ~/.config/clickgate on Linux).
func DefaultDir() (string, error) {
	if d := os.Getenv(ConfigDirEnv); d != "" {
		return d, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("login: no configuration directory (%v); set %s", err, ConfigDirEnv)
	}
	return filepath.Join(base, "clickgate"), nil
}

// Session is one cached sign-in: the tokens of a person at an issuer for a
// client, and what it takes to refresh and revoke them. It is kept in a
// file only its owner may read.
type Session struct {
	Issuer       string   `json:"issuer"`
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	Audience     string   `json:"audience,omitempty"`

	TokenEndpoint      string `json:"token_endpoint"`
	RevocationEndpoint string `json:"revocation_endpoint,omitempty"`

	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	IDToken      string    `json:"id_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	Updated      time.Time `json:"updated"`
}

// update takes the tokens of a grant; a refresh that returns no new
// refresh token or ID token keeps the old ones.
func (s *Session) update(tok *oauth2.Token, now time.Time) {
	s.AccessToken = tok.AccessToken
	s.TokenType = tok.TokenType
	if tok.RefreshToken != "" {
		s.RefreshToken = tok.RefreshToken
	}
	if id, _ := tok.Extra("id_token").(string); id != "" {
		s.IDToken = id
	}
	s.Expiry = tok.Expiry
	if s.Expiry.IsZero() {
		s.Expiry = jwtExpiry(tok.AccessToken)
	}
	s.Updated = now
}

// ValidFor reports whether the access token has at least d of its
// lifetime left at now. A token of unknown lifetime is taken as valid.
func (s *Session) ValidFor(now time.Time, d time.Duration) bool {
	if s.AccessToken == "" {
		return false
	}
	return s.Expiry.IsZero() || s.Expiry.Sub(now) >= d
}

// jwtExpiry is the exp claim of a JWT, read without verifying it (only to
// know when to refresh); zero for anything else.
func jwtExpiry(token string) time.Time {
	if exp, ok := jwtClaims(token)["exp"].(float64); ok && exp > 0 {
		return time.Unix(int64(exp), 0)
	}
	return time.Time{}
}

// Current is what clickgate login remembers for later commands: the
// sign-in to use and the clickgate server to talk to.
type Current struct {
	Server   string `json:"server,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	ClientID string `json:"client_id,omitempty"`
}

// Store keeps sign-ins in a directory: tokens/<hash of issuer and
// client>.json (mode 0600, directories 0700) and current.json.
type Store struct {
	Dir string
}

// NewStore is a store in dir, or in DefaultDir when dir is empty.
func NewStore(dir string) (*Store, error) {
	if dir == "" {
		var err error
		if dir, err = DefaultDir(); err != nil {
			return nil, err
		}
	}
	return &Store{Dir: dir}, nil
}

func (s *Store) tokensDir() string { return filepath.Join(s.Dir, "tokens") }

// Path is the cache file of the sign-in at issuer for clientID.
func (s *Store) Path(issuer, clientID string) string {
	sum := sha256.Sum256([]byte(strings.TrimRight(issuer, "/") + "\x00" + clientID))
	return filepath.Join(s.tokensDir(), hex.EncodeToString(sum[:16])+".json")
}

// Load reads the cached sign-in at issuer for clientID. It refuses a file
// that others may read or that belongs to someone else; ErrNotSignedIn
// when there is none.
func (s *Store) Load(issuer, clientID string) (*Session, error) {
	path := s.Path(issuer, clientID)
	b, err := readPrivate(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s as %s (run 'clickgate login')", ErrNotSignedIn, issuer, clientID)
	}
	if err != nil {
		return nil, err
	}
	var sess Session
	if err := json.Unmarshal(b, &sess); err != nil {
		return nil, fmt.Errorf("login: token cache %s is damaged (%v); run 'clickgate login' again", path, err)
	}
	if strings.TrimRight(sess.Issuer, "/") != strings.TrimRight(issuer, "/") || sess.ClientID != clientID {
		return nil, fmt.Errorf("login: token cache %s is for %s as %s, not %s as %s; run 'clickgate login' again", path, sess.Issuer, sess.ClientID, issuer, clientID)
	}
	return &sess, nil
}

// Save writes sess to its cache file (mode 0600) atomically.
func (s *Store) Save(sess *Session) error {
	b, err := json.MarshalIndent(sess, "", "  ")
	if err != nil {
		return err
	}
	if err := s.ensureTokensDir(); err != nil {
		return err
	}
	return writePrivate(s.Path(sess.Issuer, sess.ClientID), append(b, '\n'))
}

// ensureTokensDir makes the tokens directory (mode 0700), tightening one
// that others may list or enter (MkdirAll leaves an existing one as it
// is). The directory above it is the user's and left alone.
func (s *Store) ensureTokensDir() error {
	dir := s.tokensDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	info, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("login: %w: %s is not a directory", ErrInsecureFile, dir)
	}
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("login: %w", err)
		}
	}
	return nil
}

// Remove deletes the cached sign-in at issuer for clientID; no error if
// there is none.
func (s *Store) Remove(issuer, clientID string) error {
	path := s.Path(issuer, clientID)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("login: %w", err)
	}
	os.Remove(path + ".lock")
	return nil
}

func (s *Store) currentPath() string { return filepath.Join(s.Dir, "current.json") }

// Current is what the last clickgate login remembered; a zero Current
// when nothing was.
func (s *Store) Current() (*Current, error) {
	b, err := readPrivate(s.currentPath())
	if errors.Is(err, fs.ErrNotExist) {
		return &Current{}, nil
	}
	if err != nil {
		return nil, err
	}
	var c Current
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("login: %s is damaged (%v); run 'clickgate login' again", s.currentPath(), err)
	}
	return &c, nil
}

// SetCurrent remembers c for later commands.
func (s *Store) SetCurrent(c *Current) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writePrivate(s.currentPath(), append(b, '\n'))
}

// ErrInsecureFile is wrapped by the error for a cache file that others
// may read or that someone else owns.
var ErrInsecureFile = errors.New("insecure token cache")

// readPrivate reads path after checking, on the open file, that only its
// owner (the current user) may read or write it.
func readPrivate(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("login: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("login: %w: %s is not a regular file", ErrInsecureFile, path)
	}
	if runtime.GOOS != "windows" {
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			return nil, fmt.Errorf("login: %w: %s has mode %04o, so other users may read or change your tokens; refusing to use it. "+
				"Fix it with 'chmod 600 %s' if you trust its contents, or remove it and run 'clickgate login' again",
				ErrInsecureFile, path, perm, path)
		}
		if err := checkOwner(info); err != nil {
			return nil, fmt.Errorf("login: %w: %s %v; refusing to use it", ErrInsecureFile, path, err)
		}
	}
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// writePrivate writes b to path through a temporary file of mode 0600 in
// the same directory (created 0700), renamed into place.
func writePrivate(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("login: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("login: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("login: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	return nil
}

// Who names the signed-in person for messages, from the (unverified) claims
// of the ID token or a JWT access token: preferred_username, email, name or
// sub; "" when neither says.
func (s *Session) Who() string {
	id, access := jwtClaims(s.IDToken), jwtClaims(s.AccessToken)
	for _, k := range []string{"email", "preferred_username", "name", "sub"} {
		for _, c := range []map[string]any{id, access} {
			if v, ok := c[k].(string); ok && v != "" {
				return v
			}
		}
	}
	return ""
}

// jwtClaims are a JWT's claims, not verified; nil for anything else.
func jwtClaims(token string) map[string]any {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var c map[string]any
	if json.Unmarshal(b, &c) != nil {
		return nil
	}
	return c
}

// Entry is one cached sign-in as listed by Entries.
type Entry struct {
	Path     string
	Issuer   string
	ClientID string
}

// Entries lists the cached sign-ins (for logout --all). A file that cannot
// be read or parsed is listed with its path only.
func (s *Store) Entries() ([]Entry, error) {
	paths, err := filepath.Glob(filepath.Join(s.tokensDir(), "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, p := range paths {
		e := Entry{Path: p}
		// Only the names are read here; Load checks the file before its
		// tokens are used.
		if b, err := os.ReadFile(p); err == nil {
			var sess Session
			if json.Unmarshal(b, &sess) == nil {
				e.Issuer, e.ClientID = sess.Issuer, sess.ClientID
			}
		}
		out = append(out, e)
	}
	return out, nil
}
