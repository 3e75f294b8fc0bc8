package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/identity"
	mcpserver "github.com/clickgate/clickgate/internal/mcp"
	"github.com/clickgate/clickgate/internal/server"
)

func runMCP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, logger, err := loadConfig("mcp", args, stderr, "warn", "log level (logs go to stderr; stdout carries only MCP messages)")
	if err != nil {
		return err
	}
	if cfg.ClickHouse == nil || !*cfg.MCP.Enabled {
		return errors.New("MCP needs a clickhouse section and mcp.enabled (the default) in the configuration")
	}
	// Only the parts MCP over stdio uses: no listener, broker or dev IdP.
	opt := server.Options{Logger: logger, Version: buildVersion()}
	auth, err := server.NewAuth(cfg, opt, nil)
	if err != nil {
		return err
	}
	defer auth.CloseAudit()
	up, err := server.NewUpstream(cfg, opt, auth.Verifier, nil)
	if err != nil {
		return err
	}
	m := server.NewMCP(cfg, opt, up, auth.Log)
	source, err := stdioCaller(cfg, auth.Authenticator)
	if err != nil {
		return err
	}
	if _, err := source(ctx); err != nil {
		return err // say so now, not at the first tool call
	}
	if up.Pool != nil {
		go up.Pool.Run(ctx)
	}
	ctx = mcpserver.WithCallerSource(ctx, source)
	return m.SDK().Run(ctx, &mcp.IOTransport{Reader: os.Stdin, Writer: nopCloser{stdout}})
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// stdioCaller returns who the local agent acts as: the person whose token
// is in CLICKGATE_TOKEN, or, in service mode without one, the service
// account on behalf of the local OS user.
func stdioCaller(cfg *config.Config, auth *authn.Authenticator) (func(context.Context) (*clickhouse.Caller, error), error) {
	tok := os.Getenv("CLICKGATE_TOKEN")
	if tok == "" {
		if cfg.ClickHouse.Mode != config.ModeService {
			return nil, fmt.Errorf("no token: set CLICKGATE_TOKEN (for example CLICKGATE_TOKEN=$(clickgate token)); only service mode runs without one")
		}
		user := "local:" + os.Getenv("USER")
		c := &clickhouse.Caller{Identity: &identity.Identity{Processor: "local", Username: user},
			Principal: &identity.Principal{User: user, Roles: cfg.Directory.Roles.Common, Processor: "local"}}
		return func(context.Context) (*clickhouse.Caller, error) { return c, nil }, nil
	}
	req := &http.Request{RemoteAddr: "stdio", Header: http.Header{"User-Agent": {"clickgate mcp (stdio)"}}}
	return func(ctx context.Context) (*clickhouse.Caller, error) {
		res, err := auth.Authenticate(ctx, req, authn.Credentials{Token: tok}, audit.InterfaceMCP)
		if err != nil {
			return nil, fmt.Errorf("CLICKGATE_TOKEN: %w", err)
		}
		return &clickhouse.Caller{Token: tok, Identity: res.Identity, Principal: res.Principal}, nil
	}, nil
}
