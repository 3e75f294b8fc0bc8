package e2e

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// demo runs 'clickgate demo' to completion with extra environment
// variables and returns its combined output and exit code.
func demo(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testkit.Clickgate, append([]string{"demo"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

var clickhousePID = regexp.MustCompile(`started \(pid (\d+)\)`)

// assertGone checks that the demo's ClickHouse process has ended.
func assertGone(t *testing.T, out string) {
	t.Helper()
	m := clickhousePID.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no ClickHouse pid in the output:\n%s", out)
	}
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("ClickHouse (pid %d) still runs after the demo ended (%v)", pid, err)
	}
	if !strings.Contains(out, "ClickHouse (pid "+m[1]+") stopped.") {
		t.Errorf("the demo did not say it stopped ClickHouse:\n%s", out)
	}
}

// TestDemoOnce: 'clickgate demo --once' starts its own ClickHouse 18.16,
// loads the dataset, signs alice and bob in at the dev IdP and checks
// through the gateway and MCP that they see different data; a second run
// reuses the data directory and the dataset.
func TestDemoOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	for run := 1; run <= 2; run++ {
		out, code := demo(t, []string{"CLICKHOUSE_URL="}, "--once", "--dir", dir, "--listen", testkit.FreeAddr(t))
		if code != 0 || strings.Count(out, "\n  ok ") != 10 || !strings.Contains(out, "All 10 checks passed") {
			t.Fatalf("run %d: exit %d\n%s", run, code, out)
		}
		for _, want := range []string{
			"ClickHouse 18.16", "230,910 rows of daily LLM token usage",
			"alice / alice-", "bob   / bob-", "/mcp", "clickgate login --server http://127.0.0.1:",
			"export TOKEN='ey", `curl -s -H "Authorization: Bearer $TOKEN"`,
			"refused: Access denied to database finance for user ch_analyst",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("run %d: the output lacks %q:\n%s", run, want, out)
			}
		}
		if loaded := strings.Contains(out, "(loaded in "); loaded != (run == 1) {
			t.Errorf("run %d: loaded the data again = %v:\n%s", run, loaded, out)
		}
		assertGone(t, out)
	}
}

// TestDemoCtrlC runs the demo as a person would: the printed curl lines
// work as printed (alice reads usage, not finance), and Ctrl-C stops
// clickgate and its ClickHouse.
func TestDemoCtrlC(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	cmd := exec.Command(testkit.Clickgate, "demo", "--dir", dir, "--listen", testkit.FreeAddr(t))
	cmd.Env = append(os.Environ(), "CLICKHOUSE_URL=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testkit.SyncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := &testkit.SyncBuffer{}
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			out.Write([]byte(sc.Text() + "\n"))
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
				close(ready)
			}
		}
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	select {
	case <-ready:
	case <-done:
		cmd.Wait()
		t.Fatalf("the demo ended early:\n%s\n%s", out, logs)
	case <-time.After(90 * time.Second):
		t.Fatalf("the demo did not get ready:\n%s\n%s", out, logs)
	}

	// Run the printed shell lines: export TOKEN=…, then the curl lines.
	var script []string
	for _, line := range strings.Split(out.String(), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "export TOKEN=") || strings.HasPrefix(line, "curl ") {
			script = append(script, line)
		}
	}
	if len(script) != 4 {
		t.Fatalf("want export and three curl lines, got %q", script)
	}
	for i, want := range []string{"", `"user": "alice@example.com"`, "gpt-4o-mini\t", "Access denied to database finance"} {
		if i == 0 {
			continue
		}
		sh := exec.Command("sh", "-c", "set -e; "+script[0]+"; "+script[i])
		res, err := sh.CombinedOutput()
		if err != nil || !strings.Contains(string(res), want) {
			t.Errorf("%s: %v\n%s\nwant %q", script[i], err, res, want)
		}
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	wait := make(chan error, 1)
	go func() { <-done; wait <- cmd.Wait() }()
	select {
	case err := <-wait:
		stopped = true
		if err != nil {
			t.Errorf("exit after Ctrl-C: %v\n%s\n%s", err, out, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the demo did not stop on Ctrl-C:\n%s", out)
	}
	assertGone(t, out.String())
}

// TestDemoExternalClickHouse: with CLICKHOUSE_URL the demo uses that
// server (here a ClickHouse 18.16 of the test's) with the accounts given,
// and starts none of its own. 18.16 has no SQL users, so without
// CLICKHOUSE_ANALYST_USER the demo says what to set.
func TestDemoExternalClickHouse(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{ExtraUsers: []chtest.User{
		{Name: "analyst", Password: "analyst-pw", Profile: "readonly", XML: "<allow_databases><database>usage</database></allow_databases>"},
	}})
	env := []string{"CLICKHOUSE_URL=" + ch.HTTPURL, "CLICKHOUSE_USER=" + chtest.AdminUser, "CLICKHOUSE_PASSWORD=" + chtest.AdminPassword}
	dir := filepath.Join(t.TempDir(), "demo")

	out, code := demo(t, env, "--once", "--dir", dir, "--listen", testkit.FreeAddr(t))
	if code != 1 || !strings.Contains(out, "CLICKHOUSE_ANALYST_USER=") {
		t.Fatalf("without an analyst account: exit %d\n%s", code, out)
	}

	env = append(env, "CLICKHOUSE_ANALYST_USER=analyst", "CLICKHOUSE_ANALYST_PASSWORD=analyst-pw")
	out, code = demo(t, env, "--once", "--dir", dir, "--listen", testkit.FreeAddr(t))
	if code != 0 || !strings.Contains(out, "All 10 checks passed") || !strings.Contains(out, "(CLICKHOUSE_URL, as ch_admin)") ||
		!strings.Contains(out, "for user analyst") || strings.Contains(out, "started (pid") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "clickhouse")); err == nil {
		t.Error("the demo made a ClickHouse data directory although CLICKHOUSE_URL was set")
	}
}
