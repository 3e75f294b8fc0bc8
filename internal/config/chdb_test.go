package config

import (
	"strings"
	"testing"
)

func TestChDBURL(t *testing.T) {
	for _, c := range []struct {
		clickhouse string
		problems   []string // each must appear; none means valid
		dir        string
	}{
		{clickhouse: "{url: 'chdb:///var/lib/clickgate/chdb', mode: service}", dir: "/var/lib/clickgate/chdb"},
		{clickhouse: "{url: 'chdb://data/', mode: service}", dir: "data"},
		{clickhouse: "{url: 'chdb:///var/lib/x', mode: mapped, accounts: [{role: r, user: u}]}", problems: []string{"clickhouse.mode: chdb:// needs mode service, not mapped"}},
		{clickhouse: "{url: 'chdb:///var/lib/x', mode: impersonate}", problems: []string{"clickhouse.mode: chdb:// needs mode service"}},
		{clickhouse: "{url: 'chdb:///var/lib/x', mode: service, user: svc, password: pw}", problems: []string{"clickhouse.user: chdb:// has no users"}},
		{clickhouse: "{url: 'chdb://', mode: service}", problems: []string{"names no data directory"}},
		{clickhouse: "{url: 'chdb:///', mode: service}", problems: []string{"names no data directory"}},
		{clickhouse: "{url: 'chdb:', mode: service}", problems: []string{"names no data directory"}},
		// Not chdb: an http(s) URL is still required, and a service account.
		{clickhouse: "{url: 'ftp://x', mode: service}", problems: []string{"is not an http(s) URL", "clickhouse.user: missing"}},
	} {
		cfg, err := parse([]byte(minimal+"clickhouse: "+c.clickhouse+"\n"), env(nil))
		if len(c.problems) == 0 {
			if err != nil {
				t.Errorf("%s: %v", c.clickhouse, err)
				continue
			}
			if dir, ok := ChDBPath(cfg.ClickHouse.URL); !ok || dir != c.dir {
				t.Errorf("%s: ChDBPath = %q, %v; want %q", c.clickhouse, dir, ok, c.dir)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted", c.clickhouse)
			continue
		}
		for _, p := range c.problems {
			if !strings.Contains(err.Error(), p) {
				t.Errorf("%s: %v\nwant %q", c.clickhouse, err, p)
			}
		}
	}
	if _, ok := ChDBPath("http://127.0.0.1:8123"); ok {
		t.Error("ChDBPath accepts http://")
	}
}
