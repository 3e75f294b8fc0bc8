package audit

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// SIGKILL of `clickgate serve` under load, measured against what the
// design promises:
//   - the file loses at most the requests in flight at the kill: an event
//     is appended (one write, no buffer) when its request ends, after the
//     answer went out;
//   - the table lacks, at the kill, what was in memory (the batch being
//     filled and the queue); those events are in the file, and the next
//     start, finding no clean-close marker, re-sends the file's last
//     minute to the table, which merges what it had by event id. So after
//     the next start the table holds what the file holds.
func TestKillUnderLoad(t *testing.T) {
	ch := upstream(t, chtest.Debian1816)
	trailCH := chtest.Start(t, chtest.Options{})
	iss := servertest.NewIssuer(t)
	dir := t.TempDir()
	listen := testkit.FreeAddr(t)
	base := "http://" + listen
	cfgPath := filepath.Join(dir, "clickgate.yaml")
	yaml := configYAML(base, iss.Processor(), ch, trailCH.HTTPURL, dir, "full")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := serveCommand(t, cfgPath, base)

	const workers = 16
	var answered, next atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		tok, _ := tokens(t, iss, base+"/mcp", people[w%len(people)])
		c := &clickgate{url: base}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := int(next.Add(1))
				if status, body, err := query(c, tok, querySQL(k, 1)); err == nil && status == 200 && strings.Count(body, "\n") == 1 {
					answered.Add(1)
				}
			}
		})
	}
	for answered.Load() < 3000 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	close(stop)
	wg.Wait()

	n := answered.Load()
	fileRecs, err := audit.ReadFile(filepath.Join(dir, "audit.jsonl"), audit.Filter{Types: []string{audit.Query}})
	if err != nil {
		t.Fatal(err)
	}
	inFile := int64(len(fileRecs))
	inTable := func() int64 {
		v := trailCH.Query(t, chtest.AdminUser, chtest.AdminPassword, "SELECT count() FROM default.clickgate_audit FINAL WHERE type = 'Query'")
		c, _ := strconv.ParseInt(v, 10, 64)
		return c
	}
	beforeRestart := inTable()
	spooled, _ := filepath.Glob(filepath.Join(dir, "spool", "*"))

	// The next start replays what was spooled; its clean stop flushes.
	restart := serveCommand(t, cfgPath, base)
	restart.Process.Signal(os.Interrupt)
	if err := restart.Wait(); err != nil {
		t.Fatalf("the restarted clickgate did not stop cleanly: %v", err)
	}
	afterRestart := inTable()

	t.Logf("SIGKILL after %d answered queries (%d clients): the file has %d events (%d lost); the table had %d at the kill (%d in memory), %d after the next start (%d spool files left by the kill)",
		n, workers, inFile, n-inFile, beforeRestart, inFile-beforeRestart, afterRestart, len(spooled))
	if n-inFile > workers || inFile > n+workers {
		t.Errorf("the file lost %d events of answered queries; at most the %d in flight may be lost", n-inFile, workers)
	}
	if afterRestart != inFile {
		t.Errorf("after the next start the table has %d events, the file %d", afterRestart, inFile)
	}
}

// serveCommand starts `clickgate serve` and waits until it answers.
func serveCommand(t *testing.T, cfgPath, base string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(testkit.Clickgate, "serve", "--config", cfgPath, "--log-level", "warn")
	logs := &testkit.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("clickgate serve did not come up: %v\n%s", err, logs)
		}
	}
}
