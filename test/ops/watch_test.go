//go:build unix

package ops

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// TestWatch: clickgate serve --watch applies a change of its file written
// by rename (a new file moved over it, as editors and configuration tools
// do), one written in place (truncated and rewritten), and one where the
// file is removed and written again; an invalid file written in place is
// refused and the running configuration stays.
func TestWatch(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	iss := newIssuer(t, "https://idp.test", "k1")
	addr := testkit.FreeAddr(t)
	path := tempFile(t, "clickgate.yaml")
	config := func(user, password string) string {
		return fmt.Sprintf(`
server: {listen: %s, shutdown_grace: 0s}
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//"}
clickhouse:
  url: %s
  mode: mapped
  accounts:
    - {role: analyst, user: %s, password: %s}
`, addr, iss.processor(), ch.HTTPURL, user, password)
	}
	reader := config(chtest.ReaderUser, chtest.ReaderPassword)
	admin := config(chtest.AdminUser, chtest.AdminPassword)
	mustWrite(t, path, reader)
	p := startServe(t, path, addr, "--watch")
	tok := iss.token(t, "alice@example.com", "ch-analyst")
	who := func() string {
		status, body, err := query(context.Background(), http.DefaultClient, p.base, tok, chtest.CurrentUserSQL())
		if err != nil || status != http.StatusOK {
			t.Fatalf("query: %d %q %v", status, body, err)
		}
		return strings.TrimSpace(body)
	}
	waitFor := func(how, user string) time.Duration {
		t.Helper()
		start := time.Now()
		for who() != user {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: still not %s after 10 s", how, user)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(start)
	}
	inode := func() uint64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	if got := who(); got != chtest.ReaderUser {
		t.Fatalf("at start: %s", got)
	}

	before := inode()
	writeRenamed(t, path, admin)
	if inode() == before {
		t.Fatal("the rename kept the inode")
	}
	renamed := waitFor("written by rename", chtest.AdminUser)

	before = inode()
	mustWrite(t, path, reader) // O_TRUNC, same file
	if inode() != before {
		t.Fatal("the in-place write changed the inode")
	}
	inPlace := waitFor("written in place", chtest.ReaderUser)

	from := p.mark()
	mustWrite(t, path, strings.Replace(admin, "mode: mapped", "mode: magic", 1))
	line, _ := p.waitLine(t, from, 10*time.Second, "configuration reload:")
	if !strings.Contains(line, "level=ERROR") || !strings.Contains(line, `trigger="file changed"`) || !strings.Contains(line, "magic") {
		t.Errorf("the invalid file's refusal: %s", line)
	}
	if got := who(); got != chtest.ReaderUser {
		t.Errorf("after an invalid file: %s; want the running configuration's %s", got, chtest.ReaderUser)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // seen missing: waited for, nothing reloaded
	mustWrite(t, path, admin)
	recreated := waitFor("removed and written again", chtest.AdminUser)

	t.Logf("--watch applied a file written by rename in %v, in place in %v, removed and written again in %v (polling every second); %d reloads logged",
		renamed.Round(time.Millisecond), inPlace.Round(time.Millisecond), recreated.Round(time.Millisecond), p.count("configuration reloaded"))
	if n := p.count("configuration reloaded"); n != 3 {
		t.Errorf("%d reloads logged; want 3 (one per valid change)", n)
	}
}
