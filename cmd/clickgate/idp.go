package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/devidp"
	"github.com/clickgate/clickgate/internal/keyring"
)

// runIdP holds the development IdP's maintenance commands.
func runIdP(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rotate-key" {
		fs := newFlags("idp", "idp rotate-key --config clickgate.yaml", stderr)
		fs.Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errUsage
	}
	fs := newFlags("idp", "idp rotate-key --config clickgate.yaml", stderr)
	path := fs.String("config", "clickgate.yaml", "configuration file (YAML)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if !cfg.DevIdP.Enabled {
		return errors.New("dev_idp is not enabled in this configuration")
	}
	ttl := cfg.DevIdP.TokenTTL
	if ttl == 0 {
		ttl = config.DefaultDevIdPTokenTTL
	}
	keep := devidp.KeepOldKeys(ttl)
	kid, err := keyring.Rotate(cfg.DevIdP.KeyFile, keep)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "New signing key %s in %s; the previous key stays published for %s so that its tokens keep verifying. A running server picks it up within a second.\n", kid, cfg.DevIdP.KeyFile, keep)
	return nil
}
