// Package npmlib says where libchdb.so is expected: the variable that names
// it, and where npm installs it (the npm package chdb depends on one
// @chdb/lib-<platform> package per platform, optionally, and npm installs
// the matching one).
//
// It imports only runtime and path/filepath, both dependencies of os/exec,
// so that package internal/chdbtest/internal/preload, whose initialisation
// order depends on importing nothing else, can use it as well as package
// chdb.
package npmlib

import (
	"path/filepath"
	"runtime"
)

// EnvLibPath names libchdb.so's path, as for chdb-go.
const EnvLibPath = "CHDB_LIB_PATH"

// Platform names the npm package @chdb/lib-<platform> that holds
// libchdb.so for this machine. Only linux-x64-gnu is exercised by the
// tests.
func Platform() string {
	arch := map[string]string{"amd64": "x64", "arm64": "arm64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	if runtime.GOOS == "linux" {
		return "linux-" + arch + "-gnu"
	}
	return runtime.GOOS + "-" + arch
}

// Path is where npm puts libchdb.so under a directory: that directory's
// node_modules/@chdb/lib-<platform>/libchdb.so.
func Path(dir string) string {
	return filepath.Join(dir, "node_modules", "@chdb", "lib-"+Platform(), "libchdb.so")
}
