package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/demo"
)

// runDemo runs the whole stack locally: a ClickHouse server (its own
// process, or CLICKHOUSE_URL), the demo dataset, and clickgate with the
// development IdP, the gateway in mapped mode and MCP; it prints what to
// try and runs until Ctrl-C, or with --once checks everything as both
// demo people and exits.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "demo [--dir .clickgate-demo] [--listen 127.0.0.1:8443] [--once]", stderr)
	dir := fs.String("dir", ".clickgate-demo", "directory for the demo's ClickHouse data, configuration and keys (reused by later runs)")
	listen := fs.String("listen", "127.0.0.1:8443", "address clickgate listens on (port 0: any free port)")
	once := fs.Bool("once", false, "start everything, check it as alice and bob through the gateway and MCP, print the results and exit")
	level := fs.String("log-level", "warn", "clickgate's log level: debug, info, warn, error")
	fs.Usage = demoUsage(fs, stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return err
	}
	secrets, err := demo.LoadSecrets(abs)
	if err != nil {
		return err
	}
	addr, err := demoListenAddr(*listen)
	if err != nil {
		return err
	}

	fmt.Fprintf(stdout, "clickgate demo: everything runs on this machine; state in %s\n\n", *dir)

	// 1. ClickHouse: the user's, or our own process.
	chURL, analyst, admin, chExited, stopCH, err := demoClickHouse(ctx, stdout, *dir, abs, secrets)
	if err != nil {
		return demoInterrupted(ctx, stdout, err)
	}
	defer stopCH()

	// 2. The dataset.
	adminClient := &demo.Client{URL: chURL, Account: admin}
	progress := demoProgress(stdout)
	loaded, err := demo.Load(ctx, adminClient, progress)
	if err != nil {
		return demoInterrupted(ctx, stdout, fmt.Errorf("loading the demo data: %w", err))
	}
	how := fmt.Sprintf("loaded in %.1f s", loaded.Took.Seconds())
	if loaded.Reused {
		how = "already loaded"
	}
	fmt.Fprintf(stdout, "\r  %-13s %s rows of daily LLM token usage, %s … %s (%s)\n", "Data", demo.Thousands(loaded.Rows), loaded.From, loaded.To, how)
	if os.Getenv("CLICKHOUSE_URL") != "" && analyst.User == demo.ExternalAnalyst {
		if analyst, err = demo.CreateAnalyst(ctx, adminClient, secrets.Analyst); err != nil {
			return err
		}
	}

	// 3. clickgate.
	base := "http://" + addr
	params := demo.ConfigParams{
		Listen: addr, PublicURL: base, KeyFile: filepath.Join(abs, "dev-idp-keys.json"),
		BrokerKeyFile: filepath.Join(abs, "broker-keys.json"), BrokerStoreFile: filepath.Join(abs, "broker-state.json"),
		AlicePassword: secrets.Alice, BobPassword: secrets.Bob,
		ClickHouseURL: chURL, Analyst: analyst, Admin: admin,
		SessionLog: filepath.Join(abs, "session-log.jsonl"),
	}
	cfgPath := filepath.Join(abs, "clickgate.yaml")
	if err := demo.WriteConfig(cfgPath, params); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("the demo's configuration %s: %w", cfgPath, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, cfg, logger, ready) }()
	select {
	case <-ready:
	case err := <-errc:
		return err
	}
	fmt.Fprintf(stdout, "  %-13s %s: dev IdP at /idp, gateway (mapped mode), MCP at /mcp, OAuth sign-in for AI clients at /oauth\n\n", "clickgate", base)

	// 4. What to do next, with a token for alice from the dev IdP, got as
	// she would get it (and bob's too, for the self-check).
	stopServe := func(err error) error {
		cancel()
		if serr := <-errc; serr != nil && err == nil {
			err = serr
		}
		return err
	}
	aliceToken, err := demo.SignIn(ctx, params.Issuer(), "alice", secrets.Alice)
	if err != nil {
		return stopServe(err)
	}
	printDemoHelp(stdout, base, *dir, secrets, analyst, admin, aliceToken)
	if *once {
		bobToken, err := demo.SignIn(ctx, params.Issuer(), "bob", secrets.Bob)
		if err == nil {
			fmt.Fprintln(stdout, "Self-check (tokens from the dev IdP; through the gateway and MCP):")
			err = demo.Check(ctx, stdout, base, aliceToken, bobToken)
		}
		return stopServe(err)
	}
	fmt.Fprintln(stdout, "Press Ctrl-C to stop clickgate and ClickHouse.")
	select {
	case err = <-errc:
		fmt.Fprintln(stdout, "\nStopping…")
		return err
	case <-chExited:
		return stopServe(fmt.Errorf("ClickHouse stopped unexpectedly; its log is in %s", filepath.Join(*dir, "clickhouse", "log")))
	}
}

func demoUsage(fs interface{ PrintDefaults() }, w io.Writer) func() {
	return func() {
		fmt.Fprintf(w, `Usage: clickgate demo [--dir .clickgate-demo] [--listen 127.0.0.1:8443] [--once]

Runs the whole system on this machine and shows how to use it.

Starts ClickHouse (Debian's clickhouse-server as its own process, data in
<dir>/clickhouse), loads a dataset of daily LLM token usage, and runs clickgate
with its development IdP (alice, an analyst; bob, an admin), the gateway in
mapped mode and MCP. A second run reuses the data (delete <dir> to start
afresh). Ctrl-C stops everything.

To use a ClickHouse of yours instead:
  CLICKHOUSE_URL             its HTTP interface, e.g. http://127.0.0.1:8123
  CLICKHOUSE_USER/_PASSWORD  an account that may create databases (bob's; default "default")
  CLICKHOUSE_ANALYST_USER/_PASSWORD
                             alice's read-only account, reading only the usage database
                             (by default the demo creates %s with SQL)

Flags:
`, demo.ExternalAnalyst)
		fs.PrintDefaults()
	}
}

// demoListenAddr resolves port 0 to a free port (the public URL and the
// IdP's issuer must name the real one) and says clearly when the port is
// taken.
func demoListenAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q: %v", listen, err)
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return "", fmt.Errorf("cannot listen on %s (%v): is another demo running? Stop it, or pass --listen %s:0 for any free port", listen, err, host)
	}
	defer l.Close()
	if port == "0" {
		port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	}
	return net.JoinHostPort(host, port), nil
}

// demoClickHouse starts the demo's own ClickHouse server, or takes the one
// CLICKHOUSE_URL names. The analyst account of an external server is
// created after the data (its grant names the usage database).
func demoClickHouse(ctx context.Context, stdout io.Writer, dir, abs string, secrets *demo.Secrets) (url string, analyst, admin demo.Account, exited <-chan struct{}, stop func(), err error) {
	stop = func() {}
	if u := os.Getenv("CLICKHOUSE_URL"); u != "" {
		admin = demo.Account{User: os.Getenv("CLICKHOUSE_USER"), Password: os.Getenv("CLICKHOUSE_PASSWORD")}
		if admin.User == "" {
			admin.User = "default"
		}
		analyst = demo.Account{User: os.Getenv("CLICKHOUSE_ANALYST_USER"), Password: os.Getenv("CLICKHOUSE_ANALYST_PASSWORD")}
		if analyst.User == "" {
			analyst = demo.Account{User: demo.ExternalAnalyst, Password: secrets.Analyst}
		}
		v, err := (&demo.Client{URL: u, Account: admin}).Query(ctx, "SELECT version()")
		if err != nil {
			return "", analyst, admin, nil, stop, fmt.Errorf("CLICKHOUSE_URL %s as %s: %w", u, admin.User, err)
		}
		fmt.Fprintf(stdout, "  %-13s %s (CLICKHOUSE_URL, as %s)\n", "ClickHouse "+v, u, admin.User)
		return strings.TrimRight(u, "/"), analyst, admin, nil, stop, nil
	}
	bin, err := demo.FindServer()
	if err != nil {
		return "", analyst, admin, nil, stop, err
	}
	analyst = demo.Account{User: demo.AnalystUser, Password: secrets.Analyst}
	admin = demo.Account{User: demo.AdminUser, Password: secrets.Admin}
	srv, err := demo.StartServer(ctx, bin, filepath.Join(abs, "clickhouse"), analyst, admin)
	if err != nil {
		return "", analyst, admin, nil, stop, err
	}
	fmt.Fprintf(stdout, "  %-13s started (pid %d), data in %s\n", "ClickHouse "+srv.Version, srv.PID, filepath.Join(dir, "clickhouse"))
	stop = func() {
		srv.Stop()
		fmt.Fprintf(stdout, "  ClickHouse (pid %d) stopped.\n", srv.PID)
	}
	return srv.URL, analyst, admin, srv.Exited(), stop, nil
}

// demoProgress shows the load's progress on a terminal, and nothing
// elsewhere (logs and CI get the final line only).
func demoProgress(stdout io.Writer) demo.Progress {
	f, ok := stdout.(*os.File)
	if !ok {
		return nil
	}
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return func(done float64) {
		const width = 30
		n := int(done * width)
		fmt.Fprintf(stdout, "\r  %-13s loading [%s%s] %3.0f%%", "Data", strings.Repeat("#", n), strings.Repeat(" ", width-n), done*100)
	}
}

// demoInterrupted turns an error caused by Ctrl-C into a quiet stop.
func demoInterrupted(ctx context.Context, stdout io.Writer, err error) error {
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, ctx.Err())) {
		fmt.Fprintln(stdout, "\nInterrupted.")
		return nil
	}
	return err
}

func printDemoHelp(w io.Writer, base, dir string, s *demo.Secrets, analyst, admin demo.Account, aliceToken string) {
	fmt.Fprintf(w, `Two people can sign in at the dev IdP (%[1]s/idp):
  alice / %-15[2]s analyst: ClickHouse account %[4]s, database usage only, read-only
  bob   / %-15[3]s admin:   ClickHouse account %[5]s, usage and finance (prices, budgets)

Next:
  1. Add this MCP server to your AI client:  %[1]s/mcp
     (e.g. claude mcp add --transport http clickgate %[1]s/mcp, or npx @modelcontextprotocol/inspector)
     It opens a browser: allow the client, sign in as alice or bob, and the client gets its own tokens.
     Then ask "Which team used the most tokens last month?" (alice cannot see costs, bob can).
  2. Sign in from a terminal:  clickgate login --server %[1]s
                               clickgate query "SELECT team, sum(requests) FROM usage.llm_usage GROUP BY team"
  3. Or use curl with alice's token (valid for an hour):
     export TOKEN='%[6]s'
     curl -s -H "Authorization: Bearer $TOKEN" %[1]s/whoami
     curl -s -H "Authorization: Bearer $TOKEN" %[1]s/ --data-binary 'SELECT model, sum(output_tokens) FROM usage.llm_usage GROUP BY model'
     curl -s -H "Authorization: Bearer $TOKEN" %[1]s/ --data-binary 'SELECT * FROM finance.team_budgets'   # refused: not for analysts

Configuration: %[7]s   Session log: %[8]s

`, base, s.Alice, s.Bob, analyst.User, admin.User, aliceToken,
		filepath.Join(dir, "clickgate.yaml"), filepath.Join(dir, "session-log.jsonl"))
}
