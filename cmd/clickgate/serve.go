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

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, logger, err := loadConfig("serve", args, stderr, "info", "log level: debug, info, warn, error")
	if err != nil {
		return err
	}
	return serve(ctx, cfg, logger, nil)
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

// serve runs the server on cfg until ctx ends; ready, if set, receives the
// listener's address once it accepts connections.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger, ready chan<- string) error {
	for _, w := range cfg.Warnings {
		logger.Warn("configuration", "warning", w)
	}
	srv, err := server.New(cfg, server.Options{Logger: logger, Version: buildVersion()})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fmt.Errorf("server.listen: %w", err)
	}
	var ml net.Listener
	if cfg.Server.MetricsListen != "" {
		if ml, err = net.Listen("tcp", cfg.Server.MetricsListen); err != nil {
			l.Close()
			return fmt.Errorf("server.metrics_listen: %w", err)
		}
	}
	gateway := "off (no clickhouse section)"
	switch {
	case cfg.ClickHouse != nil && strings.HasPrefix(cfg.ClickHouse.URL, config.ChDBScheme):
		gateway = "off (embedded engine " + cfg.ClickHouse.URL + " serves the MCP tools only)"
	case cfg.ClickHouse != nil:
		gateway = cfg.ClickHouse.URL + " in " + cfg.ClickHouse.Mode + " mode"
	}
	logger.Info("clickgate listening", "address", l.Addr().String(), "public_url", cfg.Server.PublicURL,
		"processors", cfg.Directory.Processors, "gateway", gateway, "version", buildVersion())
	if ml != nil {
		logger.Info("metrics listening", "address", ml.Addr().String(), "path", "/metrics")
	}
	for _, w := range metricsWarnings(cfg) {
		logger.Warn("metrics", "warning", w)
	}
	stopHangups := reopenOnHangup(ctx, srv, logger)
	defer stopHangups()
	if ready != nil {
		ready <- l.Addr().String()
	}
	if ml == nil {
		return srv.Serve(ctx, l)
	}
	return serveBoth(ctx, srv, l, ml)
}

// serveBoth runs the main and the metrics listener together: when ctx ends
// both shut down gracefully, and when either stops on its own the other is
// shut down too. It returns the first error.
func serveBoth(ctx context.Context, srv *server.Server, l, ml net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ctx, l); cancel() }()
	go func() {
		err := srv.ServeMetrics(ctx, ml)
		if err != nil {
			err = fmt.Errorf("server.metrics_listen: %w", err)
		}
		errc <- err
		cancel()
	}()
	err := <-errc
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

// reopenOnHangup reopens the audit file on SIGHUP, for logrotate (which
// moves the file away, then signals) until ctx ends or stop is called.
func reopenOnHangup(ctx context.Context, srv *server.Server, logger *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		for {
			select {
			case <-hup:
				if err := srv.ReopenAudit(); err != nil {
					logger.Error("SIGHUP: reopening the audit file", "error", err)
				} else {
					logger.Info("SIGHUP: audit file reopened")
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { signal.Stop(hup); cancel() }
}
