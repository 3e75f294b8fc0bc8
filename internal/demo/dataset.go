package demo

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/clickgate/clickgate/internal/chsql"
)

// The demo's databases: the analyst account reads UsageDB only, the admin
// account both.
const (
	UsageDB   = "usage"
	FinanceDB = "finance"
	// UsageTable is daily LLM token usage per team, application and model.
	UsageTable = UsageDB + ".llm_usage"
)

// Days of usage in the dataset, ending yesterday.
const days = 3 * 365

// team uses a few applications; teams differ in how much they use LLMs.
type team struct {
	name, costCenter, owner string
	weight                  float64
	budget                  int // monthly, USD
	apps                    [5]string
}

var teams = []team{
	{"support", "CC-110", "maria@example.com", 3.0, 12000, [5]string{"ticket-summarizer", "reply-drafts", "chat-assistant", "triage-bot", "kb-search"}},
	{"search", "CC-120", "ken@example.com", 2.4, 12000, [5]string{"query-rewrite", "answer-engine", "reranker", "doc-search", "spell-fix"}},
	{"sales", "CC-130", "lena@example.com", 1.2, 7000, [5]string{"lead-scoring", "email-drafts", "call-notes", "crm-enrich", "proposal-writer"}},
	{"marketing", "CC-140", "omar@example.com", 1.0, 6000, [5]string{"copywriter", "seo-briefs", "image-captions", "translation", "social-posts"}},
	{"platform", "CC-150", "bob@example.com", 1.6, 10000, [5]string{"code-review", "incident-bot", "log-explainer", "pr-summaries", "test-writer"}},
	{"data-science", "CC-160", "priya@example.com", 2.0, 7000, [5]string{"eval-harness", "labeling", "synthetic-data", "notebook-assistant", "sql-copilot"}},
	{"finance", "CC-170", "jonas@example.com", 0.5, 3000, [5]string{"invoice-extract", "report-writer", "expense-audit", "forecast-notes", "contract-review"}},
	{"legal", "CC-180", "ines@example.com", 0.6, 4000, [5]string{"contract-review", "clause-search", "redlining", "policy-qa", "translation"}},
	{"mobile", "CC-190", "tom@example.com", 0.9, 3000, [5]string{"in-app-assistant", "review-replies", "release-notes", "crash-explainer", "translation"}},
	{"security", "CC-200", "sara@example.com", 0.7, 4000, [5]string{"alert-triage", "phishing-check", "code-scan", "policy-qa", "incident-bot"}},
	{"growth", "CC-210", "li@example.com", 0.8, 5000, [5]string{"experiment-notes", "churn-insights", "email-drafts", "survey-coding", "copywriter"}},
	{"hr", "CC-220", "anna@example.com", 0.4, 2500, [5]string{"job-posts", "cv-screening", "policy-qa", "onboarding-bot", "translation"}},
}

// model is an LLM with its prices (USD per million tokens), typical
// tokens per request and the day (from the start of the data) it arrived.
type model struct {
	name, provider      string
	launch              int
	weight              float64
	in, cachedIn, out   float64
	tokensIn, tokensOut int
}

var models = []model{
	{"gpt-4o", "openai", 0, 1.4, 2.50, 1.25, 10.00, 2600, 420},
	{"gpt-4o-mini", "openai", 90, 2.2, 0.15, 0.075, 0.60, 1900, 330},
	{"o3-mini", "openai", 640, 0.6, 1.10, 0.55, 4.40, 3200, 1500},
	{"claude-sonnet", "anthropic", 0, 1.3, 3.00, 0.30, 15.00, 4200, 610},
	{"claude-haiku", "anthropic", 260, 1.5, 0.80, 0.08, 4.00, 2100, 290},
	{"gemini-flash", "google", 420, 1.1, 0.10, 0.025, 0.40, 3600, 380},
	{"llama-70b", "self-hosted", 180, 0.8, 0.35, 0.35, 0.40, 2400, 350},
	{"mistral-large", "mistral", 330, 0.5, 2.00, 2.00, 6.00, 2800, 450},
}

// Loaded describes the dataset.
type Loaded struct {
	Rows     int64
	From, To string // first and last date
	Reused   bool   // loaded by an earlier run
	Took     time.Duration
}

// Progress receives the share loaded so far, from 0 to 1.
type Progress func(done float64)

// Load creates the demo's databases and tables through admin and fills
// them, unless an earlier run did. Tables are filled under a temporary
// name and renamed when complete, so an interrupted load is redone.
func Load(ctx context.Context, admin *Client, progress Progress) (*Loaded, error) {
	if progress == nil {
		progress = func(float64) {}
	}
	t0 := time.Now()
	for _, db := range []string{UsageDB, FinanceDB} {
		if _, err := admin.Query(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
			return nil, fmt.Errorf("creating database %s: %w", db, err)
		}
	}
	reused := true
	for _, t := range []struct {
		name, schema string
		fill         func(tmp string) error
	}{
		{FinanceDB + ".model_prices", pricesSchema, func(tmp string) error { return insertValues(ctx, admin, tmp, pricesRows()) }},
		{FinanceDB + ".team_budgets", budgetsSchema, func(tmp string) error { return insertValues(ctx, admin, tmp, budgetRows()) }},
		{UsageTable, usageSchema, func(tmp string) error { return fillUsage(ctx, admin, tmp, progress) }},
	} {
		exists, err := admin.Query(ctx, "EXISTS TABLE "+t.name)
		if err != nil {
			return nil, err
		}
		if exists == "1" {
			continue
		}
		reused = false
		tmp := t.name + "_loading"
		for _, sql := range []string{"DROP TABLE IF EXISTS " + tmp, fmt.Sprintf(t.schema, tmp)} {
			if _, err := admin.Query(ctx, sql); err != nil {
				return nil, fmt.Errorf("creating %s: %w", t.name, err)
			}
		}
		if err := t.fill(tmp); err != nil {
			return nil, fmt.Errorf("loading %s: %w", t.name, err)
		}
		if _, err := admin.Query(ctx, "RENAME TABLE "+tmp+" TO "+t.name); err != nil {
			return nil, err
		}
	}
	stats, err := admin.Query(ctx, "SELECT count(), min(date), max(date) FROM "+UsageTable)
	if err != nil {
		return nil, err
	}
	f := strings.Split(stats, "\t")
	if len(f) != 3 {
		return nil, fmt.Errorf("unexpected answer %q", stats)
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return &Loaded{Rows: n, From: f[1], To: f[2], Reused: reused, Took: time.Since(t0)}, nil
}

const usageSchema = `CREATE TABLE %s (
    date Date,
    team String,
    app String,
    model String,
    provider String,
    requests UInt32,
    input_tokens UInt64,
    cached_input_tokens UInt64,
    output_tokens UInt64,
    errors UInt32
) ENGINE = MergeTree PARTITION BY toYYYYMM(date) ORDER BY (date, team, app, model)`

const pricesSchema = `CREATE TABLE %s (
    model String,
    provider String,
    input_usd_per_mtok Float64,
    cached_input_usd_per_mtok Float64,
    output_usd_per_mtok Float64
) ENGINE = MergeTree ORDER BY model`

const budgetsSchema = `CREATE TABLE %s (
    team String,
    cost_center String,
    owner String,
    monthly_budget_usd UInt32
) ENGINE = MergeTree ORDER BY team`

func pricesRows() []string {
	var rows []string
	for _, m := range models {
		rows = append(rows, fmt.Sprintf("(%s, %s, %g, %g, %g)", chsql.Literal(m.name), chsql.Literal(m.provider), m.in, m.cachedIn, m.out))
	}
	return rows
}

func budgetRows() []string {
	var rows []string
	for _, t := range teams {
		rows = append(rows, fmt.Sprintf("(%s, %s, %s, %d)", chsql.Literal(t.name), chsql.Literal(t.costCenter), chsql.Literal(t.owner), t.budget))
	}
	return rows
}

func insertValues(ctx context.Context, c *Client, table string, rows []string) error {
	_, err := c.Query(ctx, "INSERT INTO "+table+" VALUES "+strings.Join(rows, ", "))
	return err
}

// fillUsage generates the usage rows in SQL, a slice of days at a time.
// Everything is a deterministic function of the row number (cityHash64,
// intHash32 over numbers(), all in ClickHouse 18.16): which team uses which
// model in which application, steady growth over the years, quiet weekends,
// new models ramping up after their launch, day-to-day noise and the odd
// spike of a batch job.
func fillUsage(ctx context.Context, c *Client, table string, progress Progress) error {
	start := time.Now().AddDate(0, 0, -days).Format("2006-01-02")
	perDay := len(teams) * len(teams[0].apps) * len(models)
	const chunks = 20
	daysPer := (days + chunks - 1) / chunks
	progress(0)
	for d0 := 0; d0 < days; d0 += daysPer {
		d1 := min(d0+daysPer, days)
		sql := usageSQL(table, start, perDay, d0*perDay, d1*perDay)
		if _, err := c.Query(ctx, sql); err != nil {
			return err
		}
		progress(float64(d1) / days)
	}
	return nil
}

func usageSQL(table, start string, perDay, from, to int) string {
	var teamNames, teamWeights, apps []string
	for _, t := range teams {
		teamNames = append(teamNames, chsql.Literal(t.name))
		teamWeights = append(teamWeights, fmt.Sprintf("%.2f", t.weight))
		var a []string
		for _, app := range t.apps {
			a = append(a, chsql.Literal(app))
		}
		apps = append(apps, "["+strings.Join(a, ", ")+"]")
	}
	var names, providers, launches, weights, tin, tout []string
	for _, m := range models {
		names = append(names, chsql.Literal(m.name))
		providers = append(providers, chsql.Literal(m.provider))
		launches = append(launches, strconv.Itoa(m.launch))
		weights = append(weights, fmt.Sprintf("%.2f", m.weight))
		tin = append(tin, fmt.Sprintf("%d.0", m.tokensIn))
		tout = append(tout, fmt.Sprintf("%d.0", m.tokensOut))
	}
	arr := func(xs []string) string { return "[" + strings.Join(xs, ", ") + "]" }
	appsPerTeam := len(teams[0].apps)
	r := strings.NewReplacer(
		"$TABLE", table, "$START", chsql.Literal(start), "$DAYS", strconv.Itoa(days),
		"$FROM", strconv.Itoa(from), "$COUNT", strconv.Itoa(to-from),
		"$PER_DAY", strconv.Itoa(perDay), "$PER_TEAM", strconv.Itoa(appsPerTeam*len(models)), "$MODELS", strconv.Itoa(len(models)),
		"$TEAM_WEIGHTS", arr(teamWeights), "$TEAMS", arr(teamNames), "$APPS", arr(apps),
		"$MODEL_NAMES", arr(names), "$PROVIDERS", arr(providers), "$LAUNCHES", arr(launches),
		"$MODEL_WEIGHTS", arr(weights), "$TOKENS_IN", arr(tin), "$TOKENS_OUT", arr(tout),
	)
	return r.Replace(`INSERT INTO $TABLE
SELECT
    toDate($START) + d AS date,
    $TEAMS[t + 1] AS team,
    $APPS[t + 1][a + 1] AS app,
    $MODEL_NAMES[m + 1] AS model,
    $PROVIDERS[m + 1] AS provider,
    toUInt32(greatest(1, base * growth * weekday * ramp * noise * spike)) AS requests,
    toUInt64(requests * $TOKENS_IN[m + 1] * (0.6 + (intHash32(n * 4 + 1) % 800) / 1000)) AS input_tokens,
    toUInt64(input_tokens * (cityHash64(t, a, m, 'cache') % 45) / 100 * (0.8 + (intHash32(n * 4 + 2) % 400) / 1000)) AS cached_input_tokens,
    toUInt64(requests * $TOKENS_OUT[m + 1] * (0.7 + (intHash32(n * 4 + 3) % 600) / 1000)) AS output_tokens,
    toUInt32(requests * (cityHash64(t, a, m, 'errors') % 30) / 3000 * (intHash32(n * 4 + 4) % 200) / 100) AS errors
FROM
(
    SELECT
        number AS n,
        intDiv(number, $PER_DAY) AS d,
        intDiv(number % $PER_DAY, $PER_TEAM) AS t,
        intDiv(number % $PER_TEAM, $MODELS) AS a,
        number % $MODELS AS m,
        (100 + cityHash64(t, a, m, 'base') % 3000) * $TEAM_WEIGHTS[t + 1] * $MODEL_WEIGHTS[m + 1] AS base,
        exp((d - $DAYS) / 480) AS growth,
        if(toDayOfWeek(toDate($START) + d) >= 6, 0.3, 1.0) AS weekday,
        least(1.0, (d - $LAUNCHES[m + 1] + 1) / 60) AS ramp,
        0.8 + (intHash32(n) % 400) / 1000 AS noise,
        if(intHash32(n * 7 + 5) % 400 = 0, 5.0, 1.0) AS spike
    FROM numbers($FROM, $COUNT)
    WHERE cityHash64(t, a, m) % 100 < 55 AND d >= $LAUNCHES[m + 1]
)`)
}
