package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/devidp"
	"github.com/clickgate/clickgate/internal/keyring"
)

// runIdP holds the development IdP's maintenance commands.
func runIdP(_ context.Context, args []string, stdout, stderr io.Writer) error {
	return rotateKey("idp", args, stdout, stderr, func(cfg *config.Config) (string, time.Duration, error) {
		if !cfg.DevIdP.Enabled {
			return "", 0, errors.New("dev_idp is not enabled in this configuration")
		}
		return cfg.DevIdP.KeyFile, devidp.KeepOldKeys(cfg.DevIdP.TokenTTL), nil
	})
}

// runBroker holds the OAuth broker's maintenance commands.
func runBroker(_ context.Context, args []string, stdout, stderr io.Writer) error {
	return rotateKey("broker", args, stdout, stderr, func(cfg *config.Config) (string, time.Duration, error) {
		if !cfg.Broker.Enabled {
			return "", 0, errors.New("broker is not enabled in this configuration")
		}
		// Same rule as the dev IdP: old keys outlive the tokens they signed.
		return cfg.Broker.KeyFile, devidp.KeepOldKeys(cfg.Broker.AccessTokenTTL), nil
	})
}

// rotateKey runs "<name> rotate-key --config F": a new signing key in the
// key file keyFile(cfg) names, the old one kept published for keep.
func rotateKey(name string, args []string, stdout, stderr io.Writer, keyFile func(*config.Config) (string, time.Duration, error)) error {
	synopsis := name + " rotate-key --config clickgate.yaml"
	fs := newFlags(name, synopsis, stderr)
	if len(args) == 0 || args[0] != "rotate-key" {
		fs.Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errUsage
	}
	path := fs.String("config", "clickgate.yaml", "configuration file (YAML)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	file, keep, err := keyFile(cfg)
	if err != nil {
		return err
	}
	kid, err := keyring.Rotate(file, keep)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "New signing key %s in %s; the previous key stays published for %s so that its tokens keep verifying. A running server picks it up within a second.\n", kid, file, keep)
	return nil
}
