// Package deploy tests clickgate's packaging in deploy/: the container image
// (deploy/Containerfile, deploy/rootfs.sh), the systemd unit and the Helm
// chart. What this machine cannot run (a container engine, systemd-analyze)
// is skipped with the exact error, after everything up to it was checked.
package deploy

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// root is the repository root (test/deploy/../..).
func root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// imageBinary builds cmd/clickgate as deploy/image.sh does (CGO_ENABLED=0,
// -tags nochdb), once per test binary.
func imageBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "clickgate-deploy")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "clickgate")
		buildErr = goBuild(root(t), buildBin, "./cmd/clickgate", "-tags", "nochdb")
	})
	if buildErr != nil {
		t.Fatalf("building clickgate with CGO_ENABLED=0: %v", buildErr)
	}
	return buildBin
}

func goBuild(dir, out, pkg string, flags ...string) error {
	cmd := exec.Command("go", append(append([]string{"build", "-trimpath", "-ldflags", "-X main.version=deploy-test", "-o", out}, flags...), pkg)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return errors.New(err.Error() + ": " + stderr.String())
	}
	return nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}
