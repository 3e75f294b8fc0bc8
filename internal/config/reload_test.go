package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestShutdownDefaultsAndValidation(t *testing.T) {
	cfg, err := parse([]byte(minimal), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if g, to := cfg.Server.Shutdown(); g != DefaultShutdownGrace || to != DefaultShutdownTimeout {
		t.Errorf("defaults: grace %v, timeout %v; want %v, %v", g, to, DefaultShutdownGrace, DefaultShutdownTimeout)
	}
	cfg, err = parse([]byte(minimal+"server: {shutdown_grace: 0s, shutdown_timeout: 90s}\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if g, to := cfg.Server.Shutdown(); g != 0 || to != 90*time.Second {
		t.Errorf("explicit: grace %v, timeout %v; want 0s (no grace), 1m30s", g, to)
	}
	if g, to := (Server{}).Shutdown(); g != DefaultShutdownGrace || to != DefaultShutdownTimeout {
		t.Errorf("a Config not from Load: grace %v, timeout %v", g, to)
	}
	for _, bad := range []string{"{shutdown_grace: -1s}", "{shutdown_timeout: -1s}", "{shutdown_timeout: 2h}", "{shutdown_grace: soon}"} {
		if _, err := parse([]byte(minimal+"server: "+bad+"\n"), env(nil)); err == nil {
			t.Errorf("server: %s was accepted", bad)
		}
	}
}

func TestKeepRestartKeys(t *testing.T) {
	load := func(server string) *Config {
		t.Helper()
		cfg, err := parse([]byte(minimal+"server: "+server+"\n"), env(nil))
		if err != nil {
			t.Fatalf("%s: %v", server, err)
		}
		return cfg
	}
	running := load("{listen: 127.0.0.1:8443, max_connections: 100}")

	same := load("{listen: 127.0.0.1:8443, max_connections: 100, shutdown_grace: 1s}")
	if changed := KeepRestartKeys(running, same); len(changed) != 0 {
		t.Errorf("no restart key changed, got %v", changed)
	}

	next := load("{listen: 127.0.0.1:9000, metrics_listen: 127.0.0.1:9464, max_connections: 5, tls: {cert_file: c.pem, key_file: k.pem}}")
	changed := KeepRestartKeys(running, next)
	if want := []string{"server.listen", "server.metrics_listen", "server.tls", "server.max_connections"}; !slices.Equal(changed, want) {
		t.Errorf("changed %v, want %v", changed, want)
	}
	s := next.Server
	if s.Listen != "127.0.0.1:8443" || s.MetricsListen != "" || s.TLS.CertFile != "" || s.MaxConnections != 100 {
		t.Errorf("running values not kept: %+v", s)
	}
	if s.PublicURL != "http://127.0.0.1:8443" {
		t.Errorf("defaulted public_url follows the kept listen and scheme: got %s", s.PublicURL)
	}

	explicit := load("{listen: 127.0.0.1:9000, public_url: https://gate.example.com}")
	KeepRestartKeys(running, explicit)
	if explicit.Server.PublicURL != "https://gate.example.com" {
		t.Errorf("an explicit public_url is the file's: got %s", explicit.Server.PublicURL)
	}

	// New certificate files with TLS on in both: a reload loads them.
	tlsRunning := load("{tls: {cert_file: a.pem, key_file: a.key}}")
	tlsNext := load("{tls: {cert_file: b.pem, key_file: b.key}}")
	if changed := KeepRestartKeys(tlsRunning, tlsNext); len(changed) != 0 || !strings.HasPrefix(tlsNext.Server.TLS.CertFile, "b.") {
		t.Errorf("new certificate files: changed %v, cert %s", changed, tlsNext.Server.TLS.CertFile)
	}
}
