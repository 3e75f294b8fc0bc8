package benchkit

import (
	"fmt"
	"strings"
)

// Issuer is the iss of the benchmarks' tokens (testkit.Claims(Issuer, …)).
const Issuer = "https://idp.test/realms/corp"

// Account is a ClickHouse account clickgate maps a role onto.
type Account struct{ Role, User, Password string }

// ClickgateConfig is the part of clickgate's configuration every benchmark
// shares, to follow its own server: block: a jwt processor for Issuer
// reading the JWKS file jwks (audience clickhouse, user name from email),
// roles from the groups ch-* (ch-admin → admin), mode mapped onto accounts.
func ClickgateConfig(jwks, clickhouseURL string, accounts ...Account) string {
	var b strings.Builder
	fmt.Fprintf(&b, `token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse], username_claim: email}
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//"}
clickhouse:
  url: %s
  mode: mapped
  accounts:
`, Issuer, jwks, clickhouseURL)
	for _, a := range accounts {
		fmt.Fprintf(&b, "    - {role: %s, user: %s, password: %s}\n", a.Role, a.User, a.Password)
	}
	return b.String()
}
