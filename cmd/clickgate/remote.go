package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/login"
)

// remoteClient talks to a clickgate server; no overall timeout, since a
// query's answer may stream for long (Ctrl-C cancels).
var remoteClient = &http.Client{}

// remote is a clickgate server and a fresh token for it.
type remote struct {
	server string
	sess   *login.Session
}

func newRemote(ctx context.Context, serverFlag, issuer, clientID string) (*remote, error) {
	store, err := login.NewStore("")
	if err != nil {
		return nil, err
	}
	cur, err := store.Current()
	if err != nil {
		return nil, err
	}
	if serverFlag == "" && os.Getenv(serverEnv) == "" && cur.Server == "" {
		return nil, fmt.Errorf("no clickgate server: pass --server URL, set %s, or sign in with 'clickgate login --server URL'", serverEnv)
	}
	server, err := resolveServer(serverFlag, cur)
	if err != nil {
		return nil, err
	}
	sess, err := freshToken(ctx, store, issuer, clientID, 0)
	if err != nil {
		return nil, err
	}
	return &remote{server: server, sess: sess}, nil
}

// do sends req with the token and turns a refusal into an error a person
// can act on.
func (r *remote) do(req *http.Request) (*http.Response, error) {
	req.Header.Set("Authorization", "Bearer "+r.sess.AccessToken)
	req.Header.Set("User-Agent", "clickgate-cli/"+buildVersion())
	resp, err := remoteClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the clickgate server %s: %w", r.server, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	reason := serverReason(body)
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("%s refused your token (%s): run 'clickgate login'", r.server, reason)
	case http.StatusForbidden:
		return nil, fmt.Errorf("%s: access denied: %s", r.server, reason)
	default:
		return nil, fmt.Errorf("%s answered HTTP %d: %s", r.server, resp.StatusCode, reason)
	}
}

// serverReason is the readable part of an error answer: the reason of
// clickgate's JSON, or ClickHouse's exception text.
func serverReason(body []byte) string {
	var j struct {
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &j) == nil && (j.Reason != "" || j.Error != "") {
		if j.Reason != "" {
			return j.Reason
		}
		return j.Error
	}
	s := strings.TrimSpace(string(body))
	if s == "" {
		return "no details"
	}
	return s
}

func runWhoami(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("whoami", "whoami [--server URL] [--json]", stderr)
	server := fs.String("server", "", "clickgate server (default $"+serverEnv+" or the one remembered at login)")
	asJSON := fs.Bool("json", false, "print the server's JSON answer as it is")
	issuer, clientID := selectFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	r, err := newRemote(ctx, *server, *issuer, *clientID)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.server+"/whoami", nil)
	if err != nil {
		return err
	}
	resp, err := r.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var who struct {
		Identity  *identity.Identity  `json:"identity"`
		Principal *identity.Principal `json:"principal"`
	}
	if err := json.Unmarshal(body, &who); err != nil || who.Identity == nil || who.Principal == nil {
		return fmt.Errorf("%s/whoami answered something other than an identity: %.200s", r.server, body)
	}
	printWhoami(stdout, r.server, who.Identity, who.Principal, time.Now())
	return nil
}

func printWhoami(w io.Writer, server string, id *identity.Identity, p *identity.Principal, now time.Time) {
	fmt.Fprintf(w, "You are %s at %s.\n\n", id.Username, server)
	row := func(k, v string) { fmt.Fprintf(w, "  %-14s %s\n", k, v) }
	list := func(s []string) string {
		if len(s) == 0 {
			return "(none)"
		}
		return strings.Join(s, ", ")
	}
	fmt.Fprintln(w, "ClickHouse")
	row("user", p.User)
	row("roles", list(p.Roles))
	fmt.Fprintln(w, "Identity")
	row("username", id.Username)
	row("subject", id.Subject)
	if id.Issuer != "" {
		row("issuer", id.Issuer)
	}
	row("processor", id.Processor)
	row("groups", list(id.Groups))
	if !id.Expiry.IsZero() {
		row("token expires", fmt.Sprintf("%s (in %s)", id.Expiry.Local().Format("2006-01-02 15:04:05 MST"), id.Expiry.Sub(now).Round(time.Second)))
	}
}

func runQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("query", `query [--format F] [--database D] [--server URL] "SQL"`, stderr)
	format := fs.String("format", "", "output format, e.g. TSV, CSV, JSONEachRow, PrettyCompact (default: the server's, TabSeparated)")
	database := fs.String("database", "", "default database of the query")
	server := fs.String("server", "", "clickgate server (default $"+serverEnv+" or the one remembered at login)")
	issuer, clientID := selectFlags(fs)
	// The SQL may come before or after the flags.
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	var sql string
	if fs.NArg() > 0 {
		sql = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return err
		}
	}
	if strings.TrimSpace(sql) == "" {
		fmt.Fprintln(stderr, `query needs the SQL to run as its argument ("-" reads it from standard input)`)
		fs.Usage()
		return errUsage
	}
	if sql == "-" {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		sql = string(b)
	}
	r, err := newRemote(ctx, *server, *issuer, *clientID)
	if err != nil {
		return err
	}
	q := url.Values{}
	if *format != "" {
		q.Set("default_format", *format)
	}
	if *database != "" {
		q.Set("database", *database)
	}
	target := r.server + "/"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(sql))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := r.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(stdout, resp.Body); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	return nil
}
