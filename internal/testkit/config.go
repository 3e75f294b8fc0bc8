package testkit

// BrokerConfig is a clickgate configuration with the OAuth broker on,
// signing people in at clickgate's own development IdP: alice
// (ch-analysts) and bob (ch-admins) get roles analysts and admin;
// mallory's domain (evil.example) is not let in. %[1]s is the listen
// address, %[2]s public_url, %[3]s a state directory, %[4]s the ClickHouse
// URL, %[5]s the rest of the clickhouse section (MappedMode, say). The
// broker section comes last: append more of its settings, indented by two
// spaces.
const BrokerConfig = `
server:
  listen: %[1]s
  public_url: %[2]s
token_processors:
  dev:
    type: oidc
    issuer: %[2]s/idp
    audiences: [clickhouse]
    username_claim: email
    required_claims: {email_verified: true}
directory:
  allowed_domains: [example.com]
  roles:
    mapping: {"ch-admins": ch-admin}
    filter: "^ch-.*$"
    transform: "s/^ch-//"
    common: [mcp_reader]
clickhouse:
  url: %[4]s
%[5]s
dev_idp:
  enabled: true
  key_file: %[3]s/dev-idp-keys.json
  users:
    - {username: alice, password: alice-pw, email: alice@example.com, groups: [ch-analysts]}
    - {username: bob, password: bob-pw, email: bob@example.com, groups: [ch-admins]}
    - {username: mallory, password: mallory-pw, email: mallory@evil.example, groups: [ch-admins]}
broker:
  enabled: true
  upstream: dev
  key_file: %[3]s/broker-keys.json
  store_file: %[3]s/broker-state.json
`

// MappedMode completes BrokerConfig's clickhouse section: admins reach
// ClickHouse as ch_admin, everyone else as ch_reader (chtest's accounts).
const MappedMode = `  mode: mapped
  accounts:
    - {role: admin, user: ch_admin, password: admin-pw}
    - {role: mcp_reader, user: ch_reader, password: reader-pw}`
