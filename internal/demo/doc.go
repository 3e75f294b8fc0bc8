// Package demo is what 'clickgate demo' needs besides clickgate itself: a
// local ClickHouse server process (Debian's clickhouse-server, with its own
// configuration and data directory, and two users.xml accounts for mapped
// mode), a generated dataset of daily LLM token usage, the demo's clickgate
// configuration (the development IdP with two people, an oidc processor
// trusting it, the gateway in mapped mode, MCP), a sign-in at the
// development IdP that gets a person's token without a browser, and the
// self-checks of 'clickgate demo --once'.
//
// The accounts on the demo's own server (ClickHouse 18.16 has no SQL users):
//
//	ch_analyst  profile readonly = AnalystReadonly (reads only), allow_databases: usage
//	ch_admin    profile default, every database
//
// alice (group ch-analysts → role analysts) reaches ClickHouse as
// ch_analyst, bob (ch-admins → admins) as ch_admin. On 18.16 an account
// with allow_databases is refused other databases (code 291) and sees only
// its own in system.databases and system.tables; system stays readable.
package demo
