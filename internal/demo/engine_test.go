package demo

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chdbtest"
)

// TestSQLOnCurrentClickHouse runs the demo's SQL on the current ClickHouse
// engine (chDB), for CLICKHOUSE_URL servers newer than 18.16: the tables,
// the generator (a few days of it, the same rows as on 18.16), the example
// queries, and the statements that create the analyst account.
func TestSQLOnCurrentClickHouse(t *testing.T) {
	e := chdbtest.Open(t)
	db := "demo_" + randomWord(6)
	e.Query(t, "CREATE DATABASE "+db)
	defer e.Exec("DROP DATABASE IF EXISTS "+db, "TSV")
	tables := map[string]string{"usage": usageSchema, "prices": pricesSchema, "budgets": budgetsSchema}
	for name, schema := range tables {
		e.Query(t, fmt.Sprintf(schema, db+"."+name))
	}
	e.Query(t, "INSERT INTO "+db+".prices VALUES "+strings.Join(pricesRows(), ", "))
	e.Query(t, "INSERT INTO "+db+".budgets VALUES "+strings.Join(budgetRows(), ", "))
	start := time.Now().AddDate(0, 0, -days).Format("2006-01-02")
	perDay := len(teams) * len(teams[0].apps) * len(models)
	// The last three days, as the last chunk of fillUsage would load them.
	e.Query(t, usageSQL(db+".usage", start, perDay, (days-3)*perDay, days*perDay))
	got := e.Query(t, "SELECT count(), uniqExact(team), uniqExact(model), min(requests) > 0, max(date) FROM "+db+".usage")
	want := fmt.Sprintf("%d\t12\t8\t1\t%s", 3*rowsPerDay, time.Now().AddDate(0, 0, -1).Format("2006-01-02"))
	if got != want {
		t.Errorf("generated: %q, want %q", got, want)
	}
	for _, sql := range []string{TokensSQL, SpendSQL} {
		sql = strings.NewReplacer("usage.llm_usage", db+".usage", "finance.model_prices", db+".prices", "today() - 30", "today() - 3").Replace(sql)
		if out := e.Query(t, sql); strings.Count(out, "\n") != 2 {
			t.Errorf("%s: %q", sql, out)
		}
	}
	for _, sql := range AnalystSQL(`pa'ss`) {
		if _, err := e.Format(sql); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}
