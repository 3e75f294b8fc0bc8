// Package preload prepares the process before chdb-go loads libchdb.so.
//
// github.com/chdb-io/chdb-go (v1.11.0) opens the library in the init function
// of its chdb-purego package: it reads CHDB_LIB_PATH once, at that moment, and
// panics if the library cannot be opened. This package's init runs first and
//
//   - points CHDB_LIB_PATH at <repo root>/node_modules/@chdb/lib-<platform>/libchdb.so
//     when the variable is not already set, so that chdb-go finds the library
//     that scripts/install-npm.sh installs;
//   - exits with a message that says how to install the library when it is
//     missing, instead of chdb-go's bare dlopen panic;
//   - records the signal handlers the Go runtime installed, before the
//     library can change any of them (see package chdbtest).
//
// Why it runs first: since Go 1.21 the specification fixes the order of package
// initialization ("the first uninitialized package in the list sorted by
// import path for which all imports are already initialized"). This package
// imports only packages that os/exec itself depends on (and
// internal/chdb/signals and internal/chdb/npmlib, which import only syscall
// and unsafe, and runtime and path/filepath, and also sort before os/exec), so
// it is ready no later than os/exec, and its import path
// (github.com/clickgate/…) sorts before os/exec; chdb-purego imports os/exec,
// so it is initialized after this package. Adding an import here that os/exec
// does not depend on (fmt, for one) would break that argument: keep the
// imports as they are.
//
// The package is internal to chdbtest, which imports it; nothing else should.
package preload

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/clickgate/clickgate/internal/chdb/npmlib"
)

// EnvLibPath is the variable chdb-go reads to find libchdb.so.
const EnvLibPath = npmlib.EnvLibPath

// Missing is the message for a library that is not where it should be.
const Missing = "libchdb.so not found: run scripts/install-npm.sh (make test does)"

var (
	// LibPath is the library chdb-go loads: CHDB_LIB_PATH as it was at process
	// start, or the project's node_modules copy.
	LibPath string
	// FromEnv tells whether LibPath came from CHDB_LIB_PATH.
	FromEnv bool
	// Err is why the library cannot be loaded; nil when it can.
	Err error
	// Signals holds the kernel's signal dispositions as the Go runtime left
	// them, before libchdb.so was loaded (Linux only; nil elsewhere).
	Signals *SignalSet
)

func init() {
	Signals = snapshotSignals()
	LibPath, FromEnv, Err = locate()
	if Err != nil {
		// chdb-go's init would panic right after this one returns.
		os.Stderr.WriteString("chdbtest: " + Err.Error() + "\n")
		os.Exit(1)
	}
	if !FromEnv {
		os.Setenv(EnvLibPath, LibPath)
	}
}

func locate() (path string, fromEnv bool, err error) {
	if p := os.Getenv(EnvLibPath); p != "" {
		if _, err := os.Stat(p); err != nil {
			return p, true, errors.New(Missing + " (" + EnvLibPath + "=" + p + ")")
		}
		return p, true, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", false, errors.New(Missing + " (" + err.Error() + ")")
	}
	path = npmlib.Path(root)
	if _, err := os.Stat(path); err != nil {
		return path, false, errors.New(Missing + " (looked for " + path + ")")
	}
	return path, false, nil
}

// RepoRoot walks up from the working directory (a test's package directory)
// to the first directory holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !fi.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
