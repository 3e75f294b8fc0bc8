//go:build !nochdb

package chdb

import (
	"fmt"

	"github.com/ebitengine/purego"
)

// open loads libchdb.so with purego. purego imports dlopen from libc, so
// even a CGO_ENABLED=0 binary is then dynamically linked; build with
// -tags nochdb (dlopen_nochdb.go) for a static binary without the engine.
func open() (l *lib, err error) {
	path, err := LibPath()
	if err != nil {
		return nil, err
	}
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("chdb: loading %s: %w", path, err)
	}
	l = &lib{path: path}
	// RegisterLibFunc panics on a missing symbol: report it as an error.
	defer func() {
		if r := recover(); r != nil {
			l, err = nil, fmt.Errorf("chdb: %s lacks a function clickgate needs (the chDB of npm package chdb 3.4 or later, ClickHouse 26.7, is required): %v", path, r)
		}
	}()
	purego.RegisterLibFunc(&l.connect, h, "chdb_connect")
	purego.RegisterLibFunc(&l.closeConn, h, "chdb_close_conn")
	purego.RegisterLibFunc(&l.query, h, "chdb_query_n")
	purego.RegisterLibFunc(&l.streamQuery, h, "chdb_stream_query_n")
	purego.RegisterLibFunc(&l.streamFetch, h, "chdb_stream_fetch_result")
	purego.RegisterLibFunc(&l.streamCancel, h, "chdb_stream_cancel_query")
	purego.RegisterLibFunc(&l.destroyResult, h, "chdb_destroy_query_result")
	purego.RegisterLibFunc(&l.resultBuffer, h, "chdb_result_buffer")
	purego.RegisterLibFunc(&l.resultLength, h, "chdb_result_length")
	purego.RegisterLibFunc(&l.resultError, h, "chdb_result_error")
	purego.RegisterLibFunc(&l.classify, h, "chdb_classify_query_n")
	purego.RegisterLibFunc(&l.setSignalHandlers, h, "chdb_set_signal_handlers_enabled")
	return l, nil
}
