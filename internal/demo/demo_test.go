package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/config"
)

// wantRows is the size of the dataset: which (day, team, application,
// model) rows exist depends on the row numbers only, not on today's date.
// Once every model has launched there are rowsPerDay rows a day.
const (
	wantRows   = 230910
	rowsPerDay = 268
)

func startServer(t *testing.T, dir string, analyst, admin Account) *Server {
	t.Helper()
	bin, err := FindServer()
	if err != nil {
		t.Fatal(err) // make test installs it (scripts/install-clickhouse.sh)
	}
	s, err := StartServer(context.Background(), bin, dir, analyst, admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// TestServerDatasetAndAccounts runs the demo's own ClickHouse 18.16: the
// dataset loads once and survives a restart; the analyst account reads
// usage only and cannot write; the admin reads everything; stopping is
// quick and leaves no process.
func TestServerDatasetAndAccounts(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "clickhouse")
	analyst := Account{User: AnalystUser, Password: "analyst-" + randomWord(8)}
	admin := Account{User: AdminUser, Password: "admin-" + randomWord(8)}
	s := startServer(t, dir, analyst, admin)
	if !strings.HasPrefix(s.Version, "18.") && s.Version == "" {
		t.Fatalf("version %q", s.Version)
	}
	adm := &Client{URL: s.URL, Account: admin}
	var steps []float64
	loaded, err := Load(ctx, adm, func(done float64) { steps = append(steps, done) })
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Reused || loaded.Rows != wantRows {
		t.Fatalf("first load: %+v, want %d fresh rows", loaded, wantRows)
	}
	if len(steps) < 10 || steps[0] != 0 || steps[len(steps)-1] != 1 || !slices.IsSorted(steps) {
		t.Errorf("progress %v: want 0 … 1, rising, in steps", steps)
	}
	wantTo := time.Now().AddDate(0, 0, -1).Format("2006-01-02")
	if loaded.To != wantTo && loaded.To != time.Now().AddDate(0, 0, -2).Format("2006-01-02") {
		t.Errorf("data ends %s, want yesterday (%s)", loaded.To, wantTo)
	}

	// The analyst: usage yes, finance no, no writes, sees only its databases.
	an := &Client{URL: s.URL, Account: analyst}
	if n, err := an.Query(ctx, "SELECT count() FROM "+UsageTable); err != nil || n != "230910" {
		t.Errorf("analyst count: %q, %v", n, err)
	}
	for sql, want := range map[string]string{
		"SELECT count() FROM finance.team_budgets":                       "Access denied to database finance for user ch_analyst (code 291)",
		"INSERT INTO usage.llm_usage (date, team) VALUES (today(), 'x')": "readonly mode (code 164)",
		"CREATE TABLE usage.x (a UInt8) ENGINE = Memory":                 "readonly mode (code 164)",
	} {
		_, err := an.Query(ctx, sql)
		var qe *QueryError
		if !errors.As(err, &qe) || !strings.Contains(qe.Message, want) {
			t.Errorf("analyst %s: %v, want %q", sql, err, want)
		}
	}
	if n, err := an.Query(ctx, "SELECT count() FROM "+UsageTable+" WHERE date = yesterday()"); err != nil || n != fmt.Sprint(rowsPerDay) {
		t.Errorf("rows of yesterday: %q, %v; want %d", n, err, rowsPerDay)
	}
	if dbs, err := an.Query(ctx, "SELECT name FROM system.databases ORDER BY name"); err != nil || dbs != "system\nusage" {
		t.Errorf("analyst databases: %q, %v", dbs, err)
	}
	if dbs, err := adm.Query(ctx, "SELECT name FROM system.databases WHERE name != 'default' ORDER BY name"); err != nil || dbs != "finance\nsystem\nusage" {
		t.Errorf("admin databases: %q, %v", dbs, err)
	}
	if _, err := (&Client{URL: s.URL}).Query(ctx, "SELECT 1"); err == nil {
		t.Error("a query without credentials was answered: the server must have no passwordless user")
	}
	// The example queries work for those they are meant for.
	for _, c := range []struct {
		who *Client
		sql string
	}{{an, TokensSQL}, {adm, SpendSQL}} {
		if out, err := c.who.Query(ctx, c.sql); err != nil || strings.Count(out, "\n") != 2 {
			t.Errorf("%s as %s: %q, %v", c.sql, c.who.Account.User, out, err)
		}
	}

	// Stop: quick (idle keep-alive connections do not hold it up), no process left.
	t0 := time.Now()
	s.Stop()
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("stopping took %v", d)
	}
	if err := syscall.Kill(s.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still there after Stop: %v", s.PID, err)
	}

	// A second run reuses the data; an interrupted load is redone.
	s = startServer(t, dir, analyst, admin)
	adm = &Client{URL: s.URL, Account: admin}
	loaded, err = Load(ctx, adm, nil)
	if err != nil || !loaded.Reused || loaded.Rows != wantRows {
		t.Fatalf("second load: %+v, %v", loaded, err)
	}
	for _, sql := range []string{
		"DROP TABLE finance.team_budgets",
		"CREATE TABLE finance.team_budgets_loading (team String) ENGINE = Memory",
		"INSERT INTO finance.team_budgets_loading VALUES ('half-done')",
	} {
		if _, err := adm.Query(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	if loaded, err = Load(ctx, adm, nil); err != nil || loaded.Reused {
		t.Fatalf("load after an interrupted one: %+v, %v", loaded, err)
	}
	if n, err := adm.Query(ctx, "SELECT count() FROM finance.team_budgets"); err != nil || n != "12" {
		t.Errorf("team_budgets reloaded: %q, %v", n, err)
	}
	if ex, _ := adm.Query(ctx, "EXISTS TABLE finance.team_budgets_loading"); ex != "0" {
		t.Error("the half-done table was left behind")
	}
}

// TestServerDirInUse: a second server on the same data directory is
// refused with a clear message, not a hang.
func TestServerDirInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "clickhouse")
	a, b := Account{User: AnalystUser, Password: "a"}, Account{User: AdminUser, Password: "b"}
	startServer(t, dir, a, b)
	bin, _ := FindServer()
	s, err := StartServer(context.Background(), bin, dir, a, b)
	if err == nil {
		s.Stop()
		t.Fatal("a second server on the same directory started")
	}
	if !strings.Contains(err.Error(), "another clickhouse-server already uses") {
		t.Errorf("error: %v", err)
	}
}

func TestFindServerSaysHowToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := os.Stat(DefaultBinary); err == nil {
		t.Skip(DefaultBinary + " is installed; the message is checked below anyway")
	}
	if _, err := FindServer(); !errors.Is(err, ErrNoServer) {
		t.Fatalf("FindServer: %v", err)
	}
}

func TestMessages(t *testing.T) {
	for _, want := range []string{"sudo scripts/install-clickhouse.sh", "apt-get install -y clickhouse-server", "CLICKHOUSE_URL="} {
		if !strings.Contains(ErrNoServer.Error(), want) {
			t.Errorf("ErrNoServer does not say %q", want)
		}
	}
	for in, want := range map[string]string{
		"Code: 291, e.displayText() = DB::Exception: Access denied to database finance for user x, e.what() = DB::Exception\n": "Access denied to database finance for user x (code 291)",
		"Code: 497. DB::Exception: alice: Not enough privileges. (ACCESS_DENIED) (version 25.8.1.1)\n":                         "alice: Not enough privileges. (ACCESS_DENIED) (version 25.8.1.1) (code 497)",
		"plain text": "plain text",
	} {
		if got := CleanMessage(in); got != want {
			t.Errorf("CleanMessage(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Thousands(1234567); got != "1,234,567" {
		t.Errorf("Thousands: %s", got)
	}
	if got := Thousands(-999); got != "-999" {
		t.Errorf("Thousands: %s", got)
	}
}

func TestSecretsAndConfig(t *testing.T) {
	dir := t.TempDir()
	s1, err := LoadSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := LoadSecrets(dir)
	if err != nil || *s1 != *s2 {
		t.Fatalf("second load: %+v, %v; want %+v", s2, err, s1)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "secrets.json")); fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets.json mode %v", fi.Mode())
	}
	if !strings.HasPrefix(s1.Alice, "alice-") || len(s1.Admin) < 20 {
		t.Errorf("secrets %+v", s1)
	}
	p := ConfigParams{
		Listen: "127.0.0.1:8443", PublicURL: "http://127.0.0.1:8443", KeyFile: filepath.Join(dir, "keys.json"),
		BrokerKeyFile: filepath.Join(dir, "broker-keys.json"), BrokerStoreFile: filepath.Join(dir, "broker-state.json"),
		AlicePassword: s1.Alice, BobPassword: s1.Bob, ClickHouseURL: "http://127.0.0.1:8123",
		Analyst: Account{AnalystUser, s1.Analyst}, Admin: Account{AdminUser, `we"ird\pass`}, SessionLog: filepath.Join(dir, "log"),
	}
	cfgPath := filepath.Join(dir, "clickgate.yaml")
	if err := WriteConfig(cfgPath, p); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("warnings: %q", cfg.Warnings)
	}
	if cfg.ClickHouse.Mode != config.ModeMapped || cfg.ClickHouse.Accounts[0].Password != `we"ird\pass` || !*cfg.MCP.Enabled ||
		!cfg.DevIdP.Enabled || len(cfg.DevIdP.Users) != 2 || cfg.TokenProcessors["demo-idp"].Issuer != p.Issuer() {
		t.Errorf("configuration: %+v", cfg)
	}
	p.KeyFile = "/x/${HOME}/k"
	if err := WriteConfig(filepath.Join(dir, "c.yaml"), p); err == nil || !strings.Contains(err.Error(), "environment variable") {
		t.Errorf("a path with ${…}: %v", err)
	}
}
