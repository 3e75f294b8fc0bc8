package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "serve --config clickgate.yaml [--watch]", stderr)
	path := fs.String("config", "clickgate.yaml", "configuration file (YAML); SIGHUP reloads it")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	watch := fs.Bool("watch", false, "also reload the configuration when the file changes (checked every second; in-place writes and write-then-rename alike)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return fmt.Errorf("%w\n(run 'clickgate check-config --config %s' for an explanation)", err, *path)
	}
	return serveFile(ctx, cfg, logger, serveOptions{path: *path, watch: *watch})
}

// loadConfig parses a server command's flags (--config, --log-level) and
// loads the configuration it names.
func loadConfig(name string, args []string, stderr io.Writer, defaultLevel, levelHelp string) (*config.Config, *slog.Logger, error) {
	fs := newFlags(name, name+" --config clickgate.yaml", stderr)
	path := fs.String("config", "clickgate.yaml", "configuration file (YAML)")
	level := fs.String("log-level", defaultLevel, levelHelp)
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	logger, err := newLogger(stderr, *level)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return nil, nil, fmt.Errorf("%w\n(run 'clickgate check-config --config %s' for an explanation)", err, *path)
	}
	return cfg, logger, nil
}

// serve runs the server on cfg until ctx ends; ready, if set, receives
// the listener's address once it accepts connections. It is the demo's:
// nothing balances it, so a stop has no grace, and nothing reloads it.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger, ready chan<- string) error {
	cfg.Server.ShutdownGrace = new(time.Duration)
	return serveFile(ctx, cfg, logger, serveOptions{ready: ready})
}

// serveOptions say what else serveFile does.
type serveOptions struct {
	// path is the configuration file that SIGHUP reloads; "": SIGHUP only
	// reopens the audit file.
	path string
	// watch reloads path when it changes, too.
	watch bool
	// ready, if set, receives the listener's address once it accepts
	// connections.
	ready chan<- string
	// watchEvery is how often --watch looks at the file; default 1 s.
	watchEvery time.Duration
}

// serveFile runs the server on cfg until ctx ends, reloading the
// configuration from o.path on SIGHUP (and on change with o.watch); then
// it shuts down gracefully (server.shutdown_grace, shutdown_timeout).
func serveFile(ctx context.Context, cfg *config.Config, logger *slog.Logger, o serveOptions) error {
	for _, w := range cfg.Warnings {
		logger.Warn("configuration", "warning", w)
	}
	proc := server.NewProcess()
	opts := server.Options{Logger: logger, Version: buildVersion(), Process: proc}
	rl := newReloader(o.path, cfg, logger, opts, proc)
	srv, err := server.New(cfg, opts)
	if err != nil {
		return err
	}
	live := server.NewLive(srv)
	rl.live = live
	l, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		srv.Close(context.Background())
		return fmt.Errorf("server.listen: %w", err)
	}
	var ml net.Listener
	if cfg.Server.MetricsListen != "" {
		if ml, err = net.Listen("tcp", cfg.Server.MetricsListen); err != nil {
			l.Close()
			srv.Close(context.Background())
			return fmt.Errorf("server.metrics_listen: %w", err)
		}
	}
	var nl net.Listener
	if cfg.Server.NativeListen != "" {
		if nl, err = net.Listen("tcp", cfg.Server.NativeListen); err != nil {
			l.Close()
			if ml != nil {
				ml.Close()
			}
			srv.Close(context.Background())
			return fmt.Errorf("server.native_listen: %w", err)
		}
		logger.Info("native protocol listening", "address", nl.Addr().String(), "tls", cfg.Server.NativeTLS.CertFile != "",
			"clickhouse", strings.Join(cfg.ClickHouse.NativeURL, ", "))
	}
	logger.Info("clickgate listening", "address", l.Addr().String(), "public_url", cfg.Server.PublicURL,
		"processors", cfg.Directory.Processors, "gateway", gatewayDescription(cfg), "version", buildVersion())
	if ml != nil {
		logger.Info("metrics listening", "address", ml.Addr().String(), "path", "/metrics")
	}
	for _, w := range metricsWarnings(cfg) {
		logger.Warn("metrics", "warning", w)
	}
	stopHangups := rl.onHangup(ctx)
	defer stopHangups()
	if o.watch && o.path != "" {
		every := o.watchEvery
		if every <= 0 {
			every = time.Second
		}
		go watchFile(ctx, o.path, every, func() { rl.reload("file changed") }, logger)
		logger.Info("watching the configuration file; a change reloads it", "file", o.path)
	}
	go hurryOnSecondSignal(ctx, live, logger)
	if o.ready != nil {
		o.ready <- l.Addr().String()
	}
	if ml == nil && nl == nil {
		err = live.Serve(ctx, l)
	} else {
		err = serveBoth(ctx, live, l, ml, nl)
	}
	if err == nil {
		logger.Info("clickgate stopped")
	}
	return err
}

// hurryOnSecondSignal ends the shutdown's grace when a second SIGINT or
// SIGTERM comes after the one that ended ctx (Ctrl-C twice).
func hurryOnSecondSignal(ctx context.Context, live *server.Live, logger *slog.Logger) {
	<-ctx.Done()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case <-sig:
		logger.Info("second signal: the listener closes now; requests in flight still get shutdown_timeout")
		live.Hurry()
	case <-time.After(time.Hour): // past any grace
	}
}

// gatewayDescription says where the gateway goes, for the log.
func gatewayDescription(cfg *config.Config) string {
	switch {
	case cfg.ClickHouse != nil && strings.HasPrefix(cfg.ClickHouse.URL, config.ChDBScheme):
		return "off (embedded engine " + cfg.ClickHouse.URL + " serves the MCP tools only)"
	case cfg.ClickHouse != nil:
		return cfg.ClickHouse.URL + " in " + cfg.ClickHouse.Mode + " mode"
	}
	return "off (no clickhouse section)"
}

// serveBoth runs the main listener with the metrics listener and the
// native one (either may be nil): when ctx ends all shut down gracefully,
// and when one stops on its own the others are shut down too. It returns
// the first error.
func serveBoth(ctx context.Context, live *server.Live, l, ml, nl net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	n := 1
	go func() { errc <- live.Serve(ctx, l); cancel() }()
	if ml != nil {
		n++
		go func() {
			err := live.ServeMetrics(ctx, ml)
			if err != nil {
				err = fmt.Errorf("server.metrics_listen: %w", err)
			}
			errc <- err
			cancel()
		}()
	}
	if nl != nil {
		n++
		go func() {
			err := live.ServeNative(ctx, nl)
			if err != nil {
				err = fmt.Errorf("server.native_listen: %w", err)
			}
			errc <- err
			cancel()
		}()
	}
	var err error
	for range n {
		if e := <-errc; err == nil {
			err = e
		}
	}
	return err
}
