// Command chdbserver runs ClickHouse 26.7 (the engine in the npm package
// chdb, libchdb.so) as a server for tests: it passes its arguments to the
// engine's command-line entry, chdb_query_cmdline, as the clickhouse
// program would get them. With a query that starts the HTTP and native
// listeners and then sleeps, the engine serves them until the process
// ends. The embedded API (chdb_connect) cannot start listeners, so this
// runs in a process of its own: package chproc starts it (Config.ChDBLib)
// with that query; internal/chtest builds it.
package main

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/clickgate/clickgate/internal/chdb"
)

func main() {
	path, err := chdb.LibPath()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chdbserver:", err)
		os.Exit(2)
	}
	lib, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chdbserver:", err)
		os.Exit(2)
	}
	var cmdline func(argc int32, argv **byte) unsafe.Pointer
	purego.RegisterLibFunc(&cmdline, lib, "chdb_query_cmdline")
	args := append([]string{"clickhouse"}, os.Args[1:]...)
	cstrs := make([][]byte, len(args))
	argv := make([]*byte, len(args)+1)
	for i, a := range args {
		cstrs[i] = append([]byte(a), 0)
		argv[i] = &cstrs[i][0]
	}
	cmdline(int32(len(args)), &argv[0])
	runtime.KeepAlive(cstrs)
	// The query ended (its sleep ran out) or failed; the engine said why
	// on standard error.
	fmt.Fprintln(os.Stderr, "chdbserver: the serving query ended")
}
