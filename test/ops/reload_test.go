//go:build unix

package ops

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// reloadConfig is the configuration of TestReloadUnderLoad: a steady
// processor for the load, a rotating one whose key changes, one mapped
// account for the role analyst, and a requests-per-minute limit for the
// person probe@example.com (0: none).
type reloadConfig struct {
	listen    string
	steady    issuer
	rotating  issuer
	account   string
	password  string
	probeRPM  int
	auditFile string
	chURL     string
}

func (c reloadConfig) yaml() string {
	return fmt.Sprintf(`
server: {listen: %s, shutdown_grace: 0s, shutdown_timeout: 10s}
token_processors:
  steady: %s
  rotating: %s
directory:
  processors: [steady, rotating]
  roles: {filter: "^ch-.*$", transform: "s/^ch-//"}
clickhouse:
  url: %s
  mode: mapped
  accounts:
    - {role: analyst, user: %s, password: %s}
limits:
  default: {max_concurrent_queries: 16}
  people: {"probe@example.com": {requests_per_minute: %d}}
audit: {file: %s}
`, c.listen, c.steady.processor(), c.rotating.processor(), c.chURL, c.account, c.password, c.probeRPM, c.auditFile)
}

// invalidConfigs are files a reload must refuse, each with what the
// refusal in the log must name.
func invalidConfigs(c reloadConfig) []struct{ yaml, reason string } {
	valid := c.yaml()
	return []struct{ yaml, reason string }{
		{valid + "bogus_section: {a: 1}\n", "bogus_section"},
		{"token_processors: [\n" + valid, "not valid YAML"},
		{strings.Replace(valid, "mode: mapped", "mode: magic", 1), "magic"},
		{strings.Replace(valid, c.rotating.jwks, "/nonexistent/jwks.json", 1), "/nonexistent/jwks.json"},
	}
}

// TestReloadUnderLoad: 100 SIGHUPs to clickgate serve, alternating a
// valid and an invalid file, while 8 connections query without pause
// (two of them with queries of half a second, across reloads).
// No request fails; after each valid reload the next requests see the
// new account mapping, the new limit and the rotated key (new tokens
// verify, old ones do not); each invalid file is refused with its reason
// in the log and the running configuration stays. Midway the audit file
// is moved away (logrotate) before the SIGHUP: the events go on in a new
// file at the configured path.
func TestReloadUnderLoad(t *testing.T) {
	const reloads, workers = 100, 8
	ch := chtest.Start(t, chtest.Options{})
	steady := newIssuer(t, "https://steady.test", "s1")
	rotated := []issuer{newIssuer(t, "https://rotating.test", "r1"), newIssuer(t, "https://rotating.test", "r2")}
	accounts := [][2]string{{chtest.ReaderUser, chtest.ReaderPassword}, {chtest.AdminUser, chtest.AdminPassword}}
	addr := testkit.FreeAddr(t)
	path := tempFile(t, "clickgate.yaml")
	auditFile := tempFile(t, "audit.jsonl")
	flavor := func(k int) reloadConfig {
		return reloadConfig{listen: addr, steady: steady, rotating: rotated[k], account: accounts[k][0], password: accounts[k][1],
			probeRPM: k, auditFile: auditFile, chURL: ch.HTTPURL}
	}
	mustWrite(t, path, flavor(0).yaml())
	p := startServe(t, path, addr)
	pid := p.cmd.Process.Pid

	// The load: 8 people, each on a keep-alive connection of their own.
	ctx, stopLoad := context.WithCancel(context.Background())
	var sent, failed atomic.Int64
	var failures sync.Map
	var wg sync.WaitGroup
	// Two of them run queries of half a second, which span several
	// reloads: they finish under the configuration they started with.
	const slow = "SELECT sum(x) FROM (SELECT sleepEachRow(0.05) + n AS x FROM (SELECT arrayJoin(range(10)) AS n))"
	for w := range workers {
		tok := steady.token(t, fmt.Sprintf("load-%d@example.com", w), "ch-analyst")
		sql, want := "SELECT 1", "1\n"
		if w < 2 {
			sql, want = slow, "45\n"
		}
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			for ctx.Err() == nil {
				status, body, err := query(ctx, c, p.base, tok, sql)
				if ctx.Err() != nil {
					return
				}
				sent.Add(1)
				if err != nil || status != http.StatusOK || body != want {
					failed.Add(1)
					failures.Store(fmt.Sprintf("%d %q %v", status, body, err), true)
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	fdsBefore := openFiles(pid)

	c := &http.Client{}
	bg := context.Background()
	// check asks as three people: the rotating key's (its account), the
	// rotated-out key's (401), and probe@example.com twice (the limit).
	// kept says the server was not replaced since the last check: the
	// probe's one request per minute is still used up then.
	check := func(k int, when string, kept bool) {
		t.Helper()
		newTok := rotated[k].token(t, "rotating@example.com", "ch-analyst")
		status, body, err := query(bg, c, p.base, newTok, chtest.CurrentUserSQL())
		if err != nil || status != http.StatusOK || strings.TrimSpace(body) != accounts[k][0] {
			t.Fatalf("%s: the key %s's token: %d %q %v; want 200 and the account %s", when, rotated[k].key.Public.KeyID, status, body, err, accounts[k][0])
		}
		oldTok := rotated[1-k].token(t, "rotating@example.com", "ch-analyst")
		if status, body, _ := query(bg, c, p.base, oldTok, "SELECT 1"); status != http.StatusUnauthorized {
			t.Fatalf("%s: a token of the key %s, rotated out: %d %q; want 401", when, rotated[1-k].key.Public.KeyID, status, body)
		}
		probe := rotated[k].token(t, "probe@example.com", "ch-analyst")
		s1, _, _ := query(bg, c, p.base, probe, "SELECT 1")
		s2, b2, _ := query(bg, c, p.base, probe, "SELECT 1")
		want1, want2 := http.StatusOK, http.StatusOK
		if k == 1 { // requests_per_minute: 1
			want2 = http.StatusTooManyRequests
			if kept {
				want1 = http.StatusTooManyRequests
			}
		}
		if s1 != want1 || s2 != want2 {
			t.Fatalf("%s: probe@example.com with requests_per_minute %d: %d then %d %q; want %d then %d", when, k, s1, s2, b2, want1, want2)
		}
	}
	check(0, "at start", false)

	start := time.Now()
	var valid, invalid, warned int
	current := 0
	for i := range reloads {
		var content, want string
		next := current
		if i%2 == 0 {
			next = 1 - current
			cfg := flavor(next)
			if i == 20 {
				cfg.listen = testkit.FreeAddr(t) // needs a restart: kept, with a warning
				want = "server.listen changed: restart clickgate to apply"
			}
			content = cfg.yaml()
			if i == 50 { // logrotate: move the file away, then SIGHUP
				if err := os.Rename(auditFile, auditFile+".1"); err != nil {
					t.Fatal(err)
				}
			}
		} else {
			bad := invalidConfigs(flavor(current))[(i/2)%4]
			content, want = bad.yaml, bad.reason
		}
		writeRenamed(t, path, content)
		from := p.mark()
		p.signal(t, syscall.SIGHUP)
		line, _ := p.waitLine(t, from, 30*time.Second, "configuration reloaded", "configuration reload:")
		if i%2 == 0 {
			if !strings.Contains(line, "configuration reloaded") {
				t.Fatalf("reload %d (valid) was refused: %s", i, line)
			}
			if want != "" {
				if w, _ := p.waitLine(t, from, time.Second, want); w != "" {
					warned++
				}
			}
			valid++
			current = next
			check(current, fmt.Sprintf("after reload %d (valid)", i), false)
		} else {
			if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "the file is not valid") || !strings.Contains(line, want) {
				t.Fatalf("reload %d (invalid): the refusal does not say %q: %s", i, want, line)
			}
			invalid++
			check(current, fmt.Sprintf("after reload %d (invalid)", i), true)
		}
	}
	took := time.Since(start)
	stopLoad()
	wg.Wait()
	fdsAfter := openFiles(pid)

	t.Logf("%d reloads (%d valid, %d refused) in %v (%v each, with 3-5 checking requests after each), %d warnings for restart keys; "+
		"load: %d requests on %d connections (2 of them of 0.5 s), %d failed; open files %d before, %d after",
		valid+invalid, valid, invalid, took.Round(time.Millisecond), (took / reloads).Round(time.Millisecond), warned,
		sent.Load(), workers, failed.Load(), fdsBefore, fdsAfter)
	if failed.Load() > 0 {
		failures.Range(func(k, _ any) bool { t.Errorf("failed request: %v", k); return true })
		t.Fatalf("%d of %d requests failed during the reloads", failed.Load(), sent.Load())
	}
	if warned != 1 {
		t.Errorf("server.listen changed once; %d warnings", warned)
	}
	// Old servers are closed: their audit files and ClickHouse connections
	// do not pile up (100 reloads would leave 50 and more). The rest
	// varies with the load's connections still open: +10 typically, +20
	// seen in make test beside other jobs.
	if fdsBefore > 0 && fdsAfter > fdsBefore+32 {
		t.Errorf("open files grew from %d to %d over %d reloads", fdsBefore, fdsAfter, reloads)
	}

	// logrotate: both files have events; the new one at the configured path.
	for _, f := range []string{auditFile + ".1", auditFile} {
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), `"type":"Query"`) {
			t.Errorf("%s: %d bytes, %v; want the gateway's Query events", f, len(b), err)
		}
	}

	// The reload metrics count across reloads.
	_, metrics, err := get(p.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf(`clickgate_config_reloads_total{result="ok"} %d`, valid),
		fmt.Sprintf(`clickgate_config_reloads_total{result="invalid"} %d`, invalid),
		`clickgate_config_reloads_total{result="failed"} 0`,
		"clickgate_config_last_reload_success_timestamp_seconds",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	from := p.mark()
	p.signal(t, syscall.SIGTERM)
	p.waitLine(t, from, 15*time.Second, "clickgate stopped")
	if err := <-p.done; err != nil {
		t.Errorf("clickgate serve after SIGTERM: %v", err)
	}
}

// openFiles is the number of open files of the process; 0 when unknown.
func openFiles(pid int) int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0
	}
	return len(entries)
}

func get(u string) (int, string, error) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
