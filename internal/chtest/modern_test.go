package chtest

import (
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// The ClickHouse 26.7 server: the same declaration as 18.16 (users,
// profiles, quotas, extra config) gives a real modern server with HTTP and
// native listeners, which Stop ends at once.
func TestModernServer(t *testing.T) {
	s := Start(t, Options{
		Release:       ChDB267,
		ExtraProfiles: `<logged><log_queries>1</log_queries></logged>`,
		ExtraUsers:    []User{{Name: "carol", Password: "carol-pw", Profile: "readonly"}, {Name: "svc", Password: "svc-pw", Profile: "logged", Quota: KeyedQuota}},
		ExtraConfig:   QueryLogConfig,
	})
	if !strings.HasPrefix(s.Version, "26.7") {
		t.Fatalf("version %q", s.Version)
	}
	t.Logf("%s started in %v", s.Release, s.StartDuration)
	for user, want := range map[string]string{"carol": "carol\t1", "svc": "svc\t0", AdminUser: AdminUser + "\t0"} {
		pw := map[string]string{"carol": "carol-pw", "svc": "svc-pw", AdminUser: AdminPassword}[user]
		if got := s.Query(t, user, pw, "SELECT currentUser(), getSetting('readonly')"); got != want {
			t.Errorf("%s: %q, want %q", user, got, want)
		}
	}
	if _, err := s.QueryErr("carol", "carol-pw", "CREATE TABLE default.t (x UInt8) ENGINE = Memory"); codeOf(t, err) != 164 {
		t.Errorf("carol writes: %v", err)
	}
	if _, err := s.QueryErr("carol", "wrong", "SELECT 1"); codeOf(t, err) != 516 {
		t.Errorf("wrong password: %v", err)
	}
	// query_log records what ran, with log_comment.
	s.Query(t, "svc", "svc-pw", "SELECT 'chtest-modern-marker' SETTINGS log_comment = 'who'")
	s.Query(t, AdminUser, AdminPassword, "SYSTEM FLUSH LOGS")
	if got := s.Query(t, AdminUser, AdminPassword, "SELECT user, log_comment FROM system.query_log WHERE query LIKE '%chtest-modern-marker%' AND type = 'QueryFinish' AND query NOT LIKE '%query_log%'"); got != "svc\twho" {
		t.Errorf("query_log: %q", got)
	}
	if _, err := s.QueryParams("svc", "svc-pw", "SELECT 1", url.Values{"quota_key": {"alice"}}); err != nil {
		t.Errorf("quota_key: %v", err)
	}
	// The native port answers.
	c, err := net.DialTimeout("tcp", s.TCPAddr, time.Second)
	if err != nil {
		t.Fatalf("native port: %v", err)
	}
	c.Close()

	s.Stop()
	if !s.Exited() {
		t.Fatal("still running after Stop")
	}
	if _, err := os.Stat(s.Dir); err != nil {
		t.Fatalf("directory gone before cleanup: %v", err)
	}
}
