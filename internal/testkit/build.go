package testkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Clickgate is the path of the binary MainWithClickgate built.
var Clickgate string

// MainWithClickgate builds cmd/clickgate once for a test binary, runs its
// tests and removes the build; call it from TestMain.
func MainWithClickgate(m *testing.M) int {
	dir, err := os.MkdirTemp("", "clickgate-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	Clickgate, err = BuildClickgate(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "building clickgate:", err)
		return 1
	}
	return m.Run()
}

// BuildClickgate builds cmd/clickgate into dir and returns its path.
func BuildClickgate(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "clickgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/clickgate")
	build.Dir = root
	build.Stderr = os.Stderr
	return bin, build.Run()
}

// moduleRoot walks up from the working directory to go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
