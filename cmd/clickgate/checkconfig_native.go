package main

import (
	"fmt"
	"strings"

	"github.com/clickgate/clickgate/internal/config"
)

// describeNative explains server.native_listen, server.native_tls and
// clickhouse.native_url.
func describeNative(cfg *config.Config) []string {
	s := cfg.Server
	if s.NativeListen == "" {
		return []string{"Native protocol: off (server.native_listen serves clickhouse-client and native drivers with tokens)."}
	}
	scheme := "plain TCP"
	if s.NativeTLS.CertFile != "" {
		scheme = "TLS with " + s.NativeTLS.CertFile
	}
	var nodes []string
	if ch := cfg.ClickHouse; ch != nil {
		nodes = ch.NativeURL
	}
	return []string{
		fmt.Sprintf("Native protocol: listens on %s (%s) and relays to ClickHouse's native interface %s (clickhouse.native_url, tried in turn), in %s mode.",
			s.NativeListen, scheme, strings.Join(nodes, ", "), cfg.ClickHouse.Mode),
		"  - sign-in: the token as password, with no user (or \"default\") or the person's ClickHouse user; clickhouse-client --jwt works too; a refusal is exception 516 before ClickHouse is contacted",
		"  - each query: the person's account, quota key and client info, clickhouse.settings fixed (a client's other value is refused), query ids in the person's namespace, KILL refused on shared accounts; the same limits and audit as the gateway (interface native)",
	}
}
