package chdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"github.com/clickgate/clickgate/internal/chdb/npmlib"
)

// EnvLibPath names libchdb.so's path, as for chdb-go.
const EnvLibPath = npmlib.EnvLibPath

// ErrLibraryNotFound is wrapped by Open's error when libchdb.so is missing.
var ErrLibraryNotFound = errors.New("libchdb.so not found")

func missing(detail string) error {
	return fmt.Errorf("%w: install the npm package chdb (npm install chdb) and set %s=…/%s (%s)",
		ErrLibraryNotFound, EnvLibPath, filepath.ToSlash(npmlib.Path("")), detail)
}

// LibPath finds libchdb.so: CHDB_LIB_PATH when set, else
// node_modules/@chdb/lib-<platform>/libchdb.so in the working directory or
// the nearest directory above it that has one.
func LibPath() (string, error) {
	if p := os.Getenv(EnvLibPath); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", missing(EnvLibPath + "=" + p + " does not exist")
		}
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", missing(EnvLibPath + " is not set")
	}
	for {
		p := npmlib.Path(dir)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", missing(EnvLibPath + " is not set and no node_modules above the working directory has it")
		}
		dir = parent
	}
}

// lib is libchdb.so's C API, bound on first use. The names and signatures
// are chDB's chdb.h (the "new API" chdb-go binds, in its binary-safe _n
// forms, so a NUL byte cannot cut a query short), plus
// chdb_classify_query_n and chdb_set_signal_handlers_enabled, which chdb-go
// v1.11.0 does not bind.
type lib struct {
	path string

	connect           func(argc int32, argv **byte) unsafe.Pointer // returns chdb_connection *
	closeConn         func(conn unsafe.Pointer)                    // takes chdb_connection *
	query             func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr) unsafe.Pointer
	streamQuery       func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr) unsafe.Pointer
	streamFetch       func(conn, stream unsafe.Pointer) unsafe.Pointer
	streamCancel      func(conn, stream unsafe.Pointer)
	destroyResult     func(res unsafe.Pointer)
	resultBuffer      func(res unsafe.Pointer) *byte
	resultLength      func(res unsafe.Pointer) uintptr
	resultError       func(res unsafe.Pointer) string // "" when there is none
	classify          func(conn unsafe.Pointer, sql *byte, sqlLen uintptr, db *byte, dbLen uintptr, out *queryAnalysis) int32
	setSignalHandlers func(enabled int32)
}

var (
	loadOnce sync.Once
	loaded   *lib
	loadErr  error
)

// load opens libchdb.so once per process. Nothing loads it before the
// first Open, so a program that never asks for the engine runs without it.
func load() (*lib, error) {
	loadOnce.Do(func() { loaded, loadErr = open() })
	return loaded, loadErr
}

// queryAnalysis is chDB's chdb_query_analysis_v1: what ClickHouse's parser
// makes of a statement (chdb_classify_query_n).
type queryAnalysis struct {
	structSize     uint32 // set by the caller
	statementCount uint32
	flags          uint32
	queryClass     uint32 // chdb_query_class
}

// classControl is chDB's CHDB_QUERY_CONTROL: a statement that acts beyond
// itself (SET, USE, SYSTEM, INTO OUTFILE, BACKUP, writes to files or URLs, …).
const classControl = 3

// cstr returns s as a NUL-terminated C string in Go memory, which stays
// put (Go's collector does not move heap objects) and alive while the
// caller holds the slice.
func cstr(s string) []byte { return append([]byte(s), 0) }

// ptr is the address of b's first byte, or of a NUL byte when b is empty.
func ptr(b []byte) *byte {
	if len(b) == 0 {
		return &[]byte{0}[0]
	}
	return &b[0]
}

// resultBytes copies a result's data out of C memory.
func (l *lib) resultBytes(res unsafe.Pointer) []byte {
	n := l.resultLength(res)
	buf := l.resultBuffer(res)
	if n == 0 || buf == nil {
		return nil
	}
	return append([]byte(nil), unsafe.Slice(buf, n)...)
}
