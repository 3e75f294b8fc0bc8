// Package signals records and restores the process's signal dispositions,
// as the kernel reports them, around code that installs handlers of its own:
// chDB (libchdb.so) replaces some of the Go runtime's handlers when it
// starts, and a Go program needs them back.
//
// It imports only syscall and unsafe, so that package
// internal/chdbtest/internal/preload, whose initialisation order depends on
// importing nothing outside os/exec's dependencies, can use it too.
package signals
