package demo

import (
	"context"
	"fmt"
	"strconv"

	"github.com/clickgate/clickgate/internal/chsql"
)

// ExternalAnalyst is the account the demo creates on a server of the
// user's (CLICKHOUSE_URL) that has SQL users.
const ExternalAnalyst = "clickgate_demo_analyst"

// AnalystSQL are the statements that create (or reset) the analyst account
// on a ClickHouse with SQL users (20.4 and later): read-only (readonly =
// AnalystReadonly), reading the usage database only.
func AnalystSQL(password string) []string {
	auth := " IDENTIFIED WITH sha256_password BY " + chsql.Literal(password) + " SETTINGS readonly = " + strconv.Itoa(AnalystReadonly)
	return []string{
		"CREATE USER IF NOT EXISTS " + ExternalAnalyst + auth,
		"ALTER USER " + ExternalAnalyst + auth,
		"GRANT SELECT ON " + UsageDB + ".* TO " + ExternalAnalyst,
	}
}

// CreateAnalyst runs AnalystSQL through admin. A server without SQL users
// (such as 18.16) refuses; the error says what to do instead.
func CreateAnalyst(ctx context.Context, admin *Client, password string) (Account, error) {
	for _, sql := range AnalystSQL(password) {
		if _, err := admin.Query(ctx, sql); err != nil {
			return Account{}, fmt.Errorf(`could not create the analyst account %s on %s (%v).
Create a read-only account there that can read only the database %q, and pass it as
    CLICKHOUSE_ANALYST_USER=… CLICKHOUSE_ANALYST_PASSWORD=…`, ExternalAnalyst, admin.URL, err, UsageDB)
		}
	}
	return Account{User: ExternalAnalyst, Password: password}, nil
}
