// Command clickgate brings OAuth 2.0 / OpenID Connect sign-in and safe MCP
// access to any ClickHouse.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is filled in init: the commands' flag sets refer back to it
// for their summaries.
var commands map[string]command

func init() {
	commands = map[string]command{
		"serve":        {"run the server: auth endpoint, whoami, gateway, MCP (one process)", runServe},
		"mcp":          {"serve MCP over stdio for a local agent (token from CLICKGATE_TOKEN)", runMCP},
		"check-config": {"validate a configuration and explain what it does", runCheckConfig},
		"demo":         {"run the whole stack locally (ClickHouse, dev IdP, gateway, MCP, sample data) and show how to use it", runDemo},
		"idp":          {"development IdP maintenance: idp rotate-key", runIdP},
		"broker":       {"OAuth broker maintenance: broker rotate-key (replicas share the key file)", runBroker},
		"version":      {"print the version", runVersion},
		"login":        {"sign in at the IdP (browser with PKCE, or --device) and cache the tokens", runLogin},
		"logout":       {"remove the cached tokens and revoke them at the IdP", runLogout},
		"token":        {"print a fresh access token (refreshed when near expiry), for scripts", runToken},
		"whoami":       {"show who a clickgate server takes you for: identity, ClickHouse user, roles", runWhoami},
		"query":        {"run SQL through a clickgate server's gateway with your token", runQuery},
		"audit":        {"read the audit trail (ClickHouse table or file): sign-ins, queries, tool calls, broker events", runAudit},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "clickgate: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := cmd.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "clickgate %s: %v\n", args[0], err)
		return 1
	}
}

// errUsage means the flag set already printed what was wrong.
var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "clickgate: OAuth 2.0 / OpenID Connect sign-in and safe AI (MCP) access for any ClickHouse.")
	fmt.Fprintln(w, "\nUsage: clickgate <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'clickgate <command> --help' for a command's flags.")
}

// newFlags returns a flag set whose --help prints the command's purpose.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: clickgate %s\n\n%s\n", synopsis, commands[name].summary)
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(fs.Output(), "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "clickgate", buildVersion())
	return nil
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return "dev"
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
