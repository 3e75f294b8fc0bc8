package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/token"
)

func runCheckConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check-config", "check-config --config clickgate.yaml [--groups g1,g2]", stderr)
	path := fs.String("config", "clickgate.yaml", "configuration file (YAML)")
	groups := fs.String("groups", "", "comma-separated example groups to run through the role pipeline (default: the mapped groups and a few samples)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	dir, err := identity.NewDirectory(server.DirectoryConfig(cfg))
	if err != nil {
		return err
	}
	var example []string
	if *groups != "" {
		example = strings.Split(*groups, ",")
	}
	explain(stdout, *path, cfg, dir, example)
	return nil
}

func explain(w io.Writer, path string, cfg *config.Config, dir *identity.Directory, example []string) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("%s is valid.", path)
	p("")
	scheme := "plain HTTP"
	if cfg.Server.TLS.CertFile != "" {
		scheme = "TLS with " + cfg.Server.TLS.CertFile
	}
	p("Server: listens on %s (%s); public URL %s; MCP resource %s/mcp.", cfg.Server.Listen, scheme, cfg.Server.PublicURL, cfg.Server.PublicURL)
	if cfg.Server.MetricsListen != "" {
		p("Metrics: /metrics on its own listener %s (plain HTTP); the main listener answers it with 404.", cfg.Server.MetricsListen)
	} else {
		p("Metrics: /metrics on the main listener, without credentials (server.metrics_listen moves it to a listener of its own).")
	}
	for _, line := range describeNative(cfg) {
		p("%s", line)
	}
	grace, timeout := cfg.Server.Shutdown()
	p("Reload: SIGHUP (and clickgate serve --watch, when this file changes) re-reads this file, checks it and applies all of it at once to new requests (processors, directory, accounts, nodes, limits, settings, MCP, broker, audit, certificate files); an invalid file keeps the running configuration. %s need a restart: a reload keeps their running values and logs a warning.",
		restartKeysText())
	p("Stop: on SIGTERM or SIGINT /readyz answers 503 at once, new connections are still accepted for %s (server.shutdown_grace), then requests in flight get up to %s (server.shutdown_timeout) and the audit trail is flushed.", grace, timeout)
	p("")
	p("Token processors, tried in this order (directory.processors):")
	clickhouseAudiences := authn.ClickHouseAudiences(cfg)
	for i, name := range cfg.Directory.Processors {
		tp := cfg.TokenProcessors[name]
		p("  %d. %s (%s)", i+1, name, tp.Type)
		for _, line := range describeProcessor(tp, clickhouseAudiences[name]) {
			p("     - %s", line)
		}
	}
	for _, name := range unusedProcessors(cfg) {
		p("  (%s is configured but not in directory.processors, so it is never used)", name)
	}
	p("")
	p("Directory:")
	if len(cfg.Directory.AllowedDomains) > 0 {
		p("  - only e-mail domains %s are let in", strings.Join(cfg.Directory.AllowedDomains, ", "))
	}
	r := cfg.Directory.Roles
	p("  - groups → roles: mapping %s → filter %s → transform %s → plus common roles %s",
		orNone(mappingString(r.Mapping)), orNone(r.Filter), orNone(r.Transform), orNone(strings.Join(r.Common, ", ")))
	if example == nil {
		example = exampleGroups(r.Mapping)
	}
	p("  - example: groups [%s] become roles [%s]", strings.Join(example, ", "), strings.Join(dir.Roles(example), ", "))
	p("")
	if ch := cfg.ClickHouse; ch != nil && strings.HasPrefix(ch.URL, config.ChDBScheme) {
		p("ClickHouse: the embedded engine (chDB, ClickHouse 26.7 in-process) on %s serves the MCP tools; the HTTP gateway is off.", strings.TrimPrefix(ch.URL, config.ChDBScheme))
		p("  - it needs libchdb.so (npm install chdb; CHDB_LIB_PATH); every person acts as the engine's one user, and file() reads any file clickgate can read: for trusted, local use")
	} else if ch != nil {
		p("ClickHouse gateway: queries at / (ClickHouse's query handler; other paths are a local 404, /ping is answered by clickgate) go to %s in %s mode:", ch.URL, ch.Mode)
		for _, line := range describeMode(ch, cfg.Server.PublicURL) {
			p("  - %s", line)
		}
		for _, line := range describeNodes(ch) {
			p("  - %s", line)
		}
		p("Limits per person (gateway and MCP together):")
		for _, line := range describeLimits(cfg.Limits, cfg.MCP.MaxConcurrentQueries) {
			p("  - %s", line)
		}
		if *cfg.MCP.Enabled && len(cfg.MCP.Policy) > 0 {
			p("MCP policy (mcp.policy; with the example roles [%s]):", strings.Join(dir.Roles(example), ", "))
			forExample := describeMCPPolicy(cfg, dir.Roles(example))
			for _, line := range append(forExample[:len(forExample)-1:len(forExample)-1], describeMCPPolicy(cfg, nil)...) {
				p("  - %s", line) // the example's entry, then every entry and the last word on grants
			}
		}
	} else {
		p("ClickHouse: no clickhouse section, so the gateway is off; /clickhouse/auth and /whoami work.")
	}
	if cfg.Broker.Enabled {
		p("OAuth broker: MCP clients sign in at %s (metadata at %s/.well-known/oauth-authorization-server):", cfg.Server.PublicURL, cfg.Server.PublicURL)
		for _, line := range describeBroker(cfg, clickhouseAudiences[config.BrokerProcessor]) {
			p("  - %s", line)
		}
	}
	if lines := describeAudit(cfg.Audit); lines == nil {
		p("Audit trail: off, nothing is recorded (set audit.file and/or audit.clickhouse; clickgate audit reads them back).")
	} else {
		p("Audit trail: one event per sign-in, gateway query, MCP tool call and OAuth broker action (read it with: clickgate audit --config %s):", path)
		for _, line := range lines {
			p("  - %s", line)
		}
	}
	warnings := append(slices.Clone(cfg.Warnings), metricsWarnings(cfg)...)
	warnings = append(warnings, quotaKeyWarnings(cfg)...)
	if len(warnings) > 0 {
		p("")
		p("Warnings:")
		for _, wn := range warnings {
			p("  - %s", wn)
		}
	}
}

// metricsWarnings says when /metrics, which needs no credentials, is
// reachable from other hosts, and how to move it.
func metricsWarnings(cfg *config.Config) []string {
	const fix = "server.metrics_listen: 127.0.0.1:9464"
	if ml := cfg.Server.MetricsListen; ml != "" {
		if host, _, err := net.SplitHostPort(ml); err == nil && !loopbackHost(host) {
			return []string{fmt.Sprintf("/metrics is reachable from the network without credentials: server.metrics_listen %s is not a loopback address; bind it to loopback (%s) or let only your Prometheus reach that port", ml, fix)}
		}
		return nil
	}
	if host, _, err := net.SplitHostPort(cfg.Server.Listen); err == nil && !loopbackHost(host) {
		return []string{fmt.Sprintf("/metrics is reachable from the network without credentials: it is served on the main listener %s, which is not a loopback address; set %s to serve it on a loopback listener of its own (the main listener then answers /metrics with 404)", cfg.Server.Listen, fix)}
	}
	if u, err := url.Parse(cfg.Server.PublicURL); err == nil && !loopbackHost(u.Hostname()) {
		return []string{fmt.Sprintf("/metrics may be reachable without credentials through whatever serves public_url %s (a proxy in front of the loopback listener %s); set %s to serve it on a listener of its own, or block /metrics at the proxy", cfg.Server.PublicURL, cfg.Server.Listen, fix)}
	}
	return nil
}

// loopbackHost reports whether a listen host is a loopback address only:
// localhost, 127.0.0.0/8 or ::1. An empty host, 0.0.0.0 and :: listen on
// every address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func describeProcessor(tp *token.Config, forClickHouse authn.Audiences) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	out = append(out, token.Describe(tp)...)
	if len(tp.Audiences) > 0 {
		add("aud must include one of: %s", strings.Join(tp.Audiences, ", "))
	}
	add("%s", describeClickHouseAudiences(tp, forClickHouse))
	add("user name from claim %q, groups from claim %q", tp.UsernameClaim, tp.GroupsClaim)
	if len(tp.RequiredClaims) > 0 {
		keys := make([]string, 0, len(tp.RequiredClaims))
		for k, v := range tp.RequiredClaims {
			keys = append(keys, fmt.Sprintf("%s=%v", k, v))
		}
		sort.Strings(keys)
		add("required claims: %s", strings.Join(keys, ", "))
	}
	add("clock leeway %s; verified tokens cached until expiry, at most %s", tp.Leeway, tp.CacheTTL)
	return out
}

// describeClickHouseAudiences says which of a processor's tokens the
// gateway and /clickhouse/auth take.
func describeClickHouseAudiences(tp *token.Config, a authn.Audiences) string {
	if a.Any {
		return "the gateway and /clickhouse/auth take its tokens on these checks (they carry no audience to check)"
	}
	var mcpOnly []string
	for _, aud := range tp.Audiences {
		if !slices.Contains(a.ClickHouse, aud) {
			mcpOnly = append(mcpOnly, aud)
		}
	}
	if len(a.ClickHouse) == 0 {
		return "the gateway and /clickhouse/auth refuse its tokens: none of its audiences is for ClickHouse, they admit a token at /mcp only"
	}
	line := "the gateway and /clickhouse/auth take a token only when its aud includes one of: " + strings.Join(a.ClickHouse, ", ")
	if len(mcpOnly) > 0 {
		line += "; at /mcp only: " + strings.Join(mcpOnly, ", ")
	}
	return line
}

func unusedProcessors(cfg *config.Config) []string {
	used := map[string]bool{}
	for _, n := range cfg.Directory.Processors {
		used[n] = true
	}
	var out []string
	for n := range cfg.TokenProcessors {
		if !used[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func mappingString(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"→"+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func exampleGroups(mapping map[string]string) []string {
	groups := make([]string, 0, len(mapping)+2)
	for k := range mapping {
		groups = append(groups, k)
	}
	sort.Strings(groups)
	return append(groups, "ch-analysts", "staff")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func describeMode(ch *config.ClickHouse, publicURL string) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	switch ch.Mode {
	case config.ModeService:
		add("every query runs as %s", ch.User)
	case config.ModeMapped:
		for _, a := range ch.Accounts {
			add("role %s → ClickHouse account %s", a.Role, a.User)
		}
		add("first match wins; someone with none of these roles is refused (403)")
	case config.ModeBearer:
		add("the caller's token is passed on only if its aud includes %q", ch.Audience)
	case config.ModeExchange:
		add("the caller's token is exchanged (RFC 8693) for one with audience %q, cached until it expires", ch.Audience)
	case config.ModeHTTPAuth:
		add("each person is their own ClickHouse user, IDENTIFIED WITH http SERVER '%s', signed in with a short-lived clickgate ticket", ch.AuthServer)
		add("ClickHouse needs <http_authentication_servers><%s><uri>%s/clickhouse/auth</uri></%s></http_authentication_servers> (23.10+)", ch.AuthServer, publicURL, ch.AuthServer)
		if ch.TicketSecret == "" {
			add("tickets are signed with a per-process key: set clickhouse.ticket_secret when running several replicas")
		}
	case config.ModeImpersonate:
		add("%s runs EXECUTE AS <person> <query> (ClickHouse 25.11+; GRANT IMPERSONATE ON <person> TO %s)", ch.User, ch.User)
	}
	if ch.Mode == config.ModeService || ch.Mode == config.ModeMapped {
		quotaKey := "not in quota_key (clickhouse.quota_key is false)"
		if ch.QuotaKey {
			quotaKey = "and in quota_key, since clickhouse.quota_key is true (see the warning below)"
		}
		add("ClickHouse sees a shared account, so the person is named in the user agent (query_log.http_user_agent \"… clickgate (user <person>)\") on every ClickHouse version, "+
			"in log_comment (user, roles, audit event_id) on ClickHouse ≥ 20.12 for accounts not at readonly = 1, %s", quotaKey)
		if ch.Mode == config.ModeService && !ch.QuotaKey {
			add("everyone shares %s's quota: for per-person quotas set clickhouse.quota_key: true and key that quota (<keyed>1</keyed> in users.xml, or KEYED BY client_key)", ch.User)
		}
	}
	if ch.Mode == config.ModeHTTPAuth || ch.Mode == config.ModeImpersonate {
		prov := ch.Provisioning
		switch {
		case prov.CreateUsers && prov.SyncRoles:
			add("users are created on first sign-in and mapped roles granted and revoked, at most every %s per person", prov.Interval)
		case prov.CreateUsers:
			add("users are created on first sign-in with their mapped roles, at most every %s per person", prov.Interval)
		case prov.SyncRoles:
			add("mapped roles are granted and revoked, at most every %s per person; users are created by you", prov.Interval)
		default:
			add("users and grants are yours to manage with SQL (provisioning is off)")
		}
	}
	if len(ch.Settings) > 0 {
		keys := make([]string, 0, len(ch.Settings))
		for k, v := range ch.Settings {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		add("fixed settings on every query (clients cannot override): %s", strings.Join(keys, ", "))
	}
	return out
}

// offlineHint suggests offline_access to an oidc upstream asked without it.
func offlineHint(cfg *config.Config) string {
	if cfg.TokenProcessors[cfg.Broker.Upstream].Type == token.TypeOIDC && !slices.Contains(cfg.Broker.UpstreamScopes, "offline_access") {
		return " (add offline_access to broker.upstream_scopes for an oidc IdP to give one)"
	}
	return ""
}

func describeBroker(cfg *config.Config, forClickHouse authn.Audiences) []string {
	b := cfg.Broker
	up := cfg.TokenProcessors[b.Upstream]
	client := "client " + up.ClientID + " (register " + cfg.Server.PublicURL + "/oauth/callback as its redirect URI there)"
	if cfg.BrokerUpstreamIsDevIdP() {
		client = "the development IdP's built-in client " + config.DevIdPBrokerClient
	}
	docs := "private and loopback addresses refused"
	if b.AllowPrivateClientURLs {
		docs = "private and loopback addresses ALLOWED (development only)"
	}
	var pre []string
	for _, c := range b.Clients {
		pre = append(pre, c.ClientID)
	}
	store := "the file " + b.StoreFile + " (shared by processes on one host)"
	if b.Store == config.BrokerStoreClickHouse {
		store = "ClickHouse table " + b.StoreTable + " as " + cfg.ClickHouse.User + " (shared by replicas; expired rows purged daily)"
	}
	seal := "broker.seal_key (replicas must share it)"
	if b.SealKey == "" {
		seal = "a key kept in the state directory next to " + b.KeyFile + " (one process only: set broker.seal_key for replicas)"
	}
	access := fmt.Sprintf("access tokens: ES256 JWTs for %s only (refused by the gateway)", cfg.MCPResource())
	if len(forClickHouse.ClickHouse) > 0 {
		access = fmt.Sprintf("access tokens: ES256 JWTs for %s and, in bearer mode, ClickHouse's audience %s (the gateway passes them on)", cfg.MCPResource(), strings.Join(forClickHouse.ClickHouse, ", "))
	}
	return []string{
		fmt.Sprintf("people sign in at processor %s (%s %s) with scopes %s, as %s", b.Upstream, up.Type, orNone(up.Issuer), strings.Join(b.UpstreamScopes, " "), client),
		fmt.Sprintf("clients: Client ID Metadata Documents (https client_id URLs; %s), dynamic registration at /oauth/register, pre-registered: %s", docs, orNone(strings.Join(pre, ", "))),
		"PKCE S256 required; redirect URIs match exactly (loopback ports may vary); every client is shown on a consent page before the sign-in",
		fmt.Sprintf("%s, valid %s, signed with keys in %s (rotate: clickgate broker rotate-key)", access, b.AccessTokenTTL, b.KeyFile),
		fmt.Sprintf("refresh tokens rotate on every use and a replay revokes the whole sign-in; a sign-in lasts %s at most", b.RefreshTokenTTL),
		"every refresh asks the IdP again when it gave a refresh token (new groups apply; someone removed there is out at their next refresh); otherwise the groups stay those of the sign-in" + offlineHint(cfg),
		fmt.Sprintf("pending sign-ins, codes and registrations are sealed with %s; used codes and refresh-token families are kept in %s", seal, store),
	}
}

// describeAudit explains the audit trail: its sinks and policies; nil
// when it has no sink.
func describeAudit(a config.Audit) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	switch a.File {
	case "":
	case "-":
		add("file: JSON lines on standard error (clickgate audit cannot read them back)")
	default:
		rotation := "not rotated by clickgate: it reopens the file on SIGHUP (for logrotate)"
		if a.MaxSize > 0 {
			rotation = fmt.Sprintf("rotated at %s into %s.1 … %s.%d", byteSize(a.MaxSize), a.File, a.File, a.MaxFiles)
		}
		add("file: JSON lines appended to %s (mode 0600), %s", a.File, rotation)
	}
	if t := a.ClickHouse; t != nil {
		as := "as ClickHouse's default user"
		if t.User != "" {
			as = "as " + t.User
		}
		ttl := "kept until you delete them (audit.clickhouse.ttl deletes them after a while, ClickHouse ≥ 19.6)"
		if t.TTL > 0 {
			ttl = "deleted " + days(t.TTL) + " after their time (TTL, ClickHouse ≥ 19.6)"
		}
		add("ClickHouse table %s.%s at %s %s (created when missing): inserted in batches of %d events or every %s; batches ClickHouse cannot take wait in %s (at most %s, then events are dropped and counted) and are replayed in order; events %s",
			t.Database, t.Table, t.URL, as, t.BatchRows, t.FlushInterval, t.SpoolDir, byteSize(t.SpoolMaxBytes), ttl)
		if a.File != "" {
			add("clickgate audit reads the table")
		}
	}
	if out == nil {
		return nil
	}
	switch a.QueryText {
	case config.QueryTextFull:
		add("query_text full: the SQL as sent (never an INSERT's data; clipped at %s)", byteSize(audit.DefaultMaxQueryBytes))
	case config.QueryTextRedacted:
		add("query_text redacted: the SQL with every literal replaced by ? (MCP tool arguments keep only their names, ClickHouse's messages only their code)")
	case config.QueryTextNone:
		add("query_text none: no SQL; each query's kind, account, outcome, duration and rows are still recorded")
	}
	switch a.LoginSuccess {
	case config.LoginSuccessPerToken:
		add("login_success per_token: one LoginSuccess per token and interface per hour (every Query and ToolCall names the person anyway); LoginFailure every time")
	case config.LoginSuccessPerRequest:
		add("login_success per_request: a LoginSuccess for every authenticated request, a LoginFailure for every refused one")
	}
	if a.Required {
		add("required: queries and tool calls are refused while no sink can persist their events")
	} else {
		add("not required: queries and tool calls run even when no sink can record them (audit.required: true refuses them)")
	}
	return out
}

// quotaKeyWarnings says what clickhouse.quota_key asks of ClickHouse.
func quotaKeyWarnings(cfg *config.Config) []string {
	ch := cfg.ClickHouse
	if ch == nil || !ch.QuotaKey || (ch.Mode != config.ModeService && ch.Mode != config.ModeMapped) {
		return nil
	}
	var accounts []string
	if ch.Mode == config.ModeService {
		accounts = []string{ch.User}
	}
	for _, a := range ch.Accounts {
		if !slices.Contains(accounts, a.User) {
			accounts = append(accounts, a.User)
		}
	}
	return []string{fmt.Sprintf("clickhouse.quota_key is true: the quota of %s must be keyed (<keyed>1</keyed> in users.xml, or CREATE QUOTA … KEYED BY client_key), or ClickHouse refuses every query with \"… doesn't allow client supplied keys\"",
		strings.Join(accounts, ", "))}
}

// byteSize writes n in the largest binary unit that divides it.
func byteSize(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// days writes d in days when it is a whole number of them.
func days(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d == day:
		return "1 day"
	case d%day == 0:
		return fmt.Sprintf("%d days", d/day)
	}
	return d.String()
}

// restartKeysText names config.RestartKeys for people.
func restartKeysText() string {
	var names []string
	for _, k := range config.RestartKeys {
		if k == "server.tls" {
			k = "server.tls turned on or off"
		}
		names = append(names, k)
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
