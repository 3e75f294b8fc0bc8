package demo

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Secrets are the demo's passwords, made on the first run and kept in the
// demo directory (mode 0600) for the next ones.
type Secrets struct {
	Alice    string `json:"alice"`
	Bob      string `json:"bob"`
	Analyst  string `json:"ch_analyst"`
	Admin    string `json:"ch_admin"`
	filename string
}

// LoadSecrets reads dir/secrets.json, creating it (and missing entries)
// with fresh random passwords.
func LoadSecrets(dir string) (*Secrets, error) {
	path := filepath.Join(dir, "secrets.json")
	s := &Secrets{filename: path}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(data, s); err != nil {
			return nil, fmt.Errorf("%s: %v (delete it to have new passwords made)", path, err)
		}
	}
	changed := false
	for _, f := range []struct {
		v      *string
		prefix string
		n      int
	}{{&s.Alice, "alice-", 6}, {&s.Bob, "bob-", 6}, {&s.Analyst, "", 24}, {&s.Admin, "", 24}} {
		if *f.v == "" {
			*f.v = f.prefix + randomWord(f.n)
			changed = true
		}
	}
	if changed {
		out, _ := json.MarshalIndent(s, "", "  ")
		if err := os.WriteFile(path, append(out, '\n'), 0o600); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// randomWord is n random lower-case letters and digits (no characters that
// YAML, XML, URLs or ${ENV} expansion would treat specially).
func randomWord(n int) string {
	const alphabet = "abcdefghijkmnopqrstuvwxyz23456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
