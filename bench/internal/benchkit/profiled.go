package benchkit

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"testing"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
)

// Profiled lets a benchmark's test binary double as clickgate's server
// with a CPU profile around it (clickgate itself has no profiling flag).
// StartClickgate, given a profile path, runs the test binary with ConfigEnv
// and ProfileEnv set; the benchmark's TestMain calls Main, which then serves
// instead of running the benchmarks.
type Profiled struct {
	ConfigEnv  string // the child's configuration file
	ProfileEnv string // the child's CPU profile; the allocation profile goes to it + ".heap"
}

// Main serves (see Profiled) when ConfigEnv is set and runs m otherwise;
// it does not return.
func (p Profiled) Main(m *testing.M) {
	if cfg := os.Getenv(p.ConfigEnv); cfg != "" {
		os.Exit(serveProfiled(cfg, os.Getenv(p.ProfileEnv)))
	}
	os.Exit(m.Run())
}

// serveProfiled is cmd/clickgate's serve (config.Load, server.New, Serve
// until SIGTERM) with a CPU profile around it.
func serveProfiled(cfgPath, profile string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "profiled serve:", err); return 1 }
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fail(err)
	}
	srv, err := server.New(cfg, server.Options{Logger: logger, Version: "bench"})
	if err != nil {
		return fail(err)
	}
	l, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fail(err)
	}
	f, err := os.Create(profile)
	if err != nil {
		return fail(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err = srv.Serve(ctx, l)
	pprof.StopCPUProfile()
	f.Close()
	if h, herr := os.Create(profile + ".heap"); herr == nil {
		_ = pprof.Lookup("allocs").WriteTo(h, 0)
		h.Close()
	}
	if err != nil {
		return fail(err)
	}
	return 0
}
