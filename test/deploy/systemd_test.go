package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func unitPath(t testing.TB) string {
	return filepath.Join(root(t), "deploy", "systemd", "clickgate.service")
}

// parseUnit reads a unit file: section → key → values (in order).
func parseUnit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			unit[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", path, n, line)
			}
			unit[section][k] = append(unit[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return unit
}

func TestSystemdUnitDirectives(t *testing.T) {
	unit := parseUnit(t, unitPath(t))
	svc := unit["Service"]
	for key, want := range map[string]string{
		"DynamicUser":             "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"StateDirectory":          "clickgate",
		"ConfigurationDirectory":  "clickgate",
		"Environment":             "CLICKGATE_STATE_DIR=%S/clickgate",
		"ExecStart":               "/usr/bin/clickgate serve --config ${CONFIGURATION_DIRECTORY}/clickgate.yaml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"Restart":                 "on-failure",
		"LimitNOFILE":             "65536",
	} {
		got, ok := svc[key]
		if !ok || len(got) != 1 || got[0] != want {
			t.Errorf("[Service] %s = %q, want exactly %q", key, got, want)
		}
	}
	if f := svc["SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
		t.Errorf("SystemCallFilter = %q, want @system-service first", f)
	}
	if got := unit["Install"]["WantedBy"]; len(got) != 1 || got[0] != "multi-user.target" {
		t.Errorf("[Install] WantedBy = %q", got)
	}
}

// verifiableUnit copies the unit with ExecStart naming bin instead of
// /usr/bin/clickgate (systemd-analyze verify checks that it is executable).
func verifiableUnit(t *testing.T, bin string) string {
	t.Helper()
	text, err := os.ReadFile(unitPath(t))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "clickgate.service")
	s := strings.ReplaceAll(string(text), "ExecStart=/usr/bin/clickgate ", "ExecStart="+bin+" ")
	if err := os.WriteFile(out, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func systemdAnalyze(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("systemd-analyze: %v (scripts/install-deploy-tools.sh installs Debian's systemd); the directives were checked by TestSystemdUnitDirectives", err)
	}
	return path
}

// TestSystemdAnalyzeVerify: systemd-analyze verify (offline) accepts the unit
// without a single warning; a bad key is reported (so the check can fail).
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa := systemdAnalyze(t)
	bin := imageBinary(t)
	unit := verifiableUnit(t, bin)
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	bad := filepath.Join(t.TempDir(), "bad.service")
	text, _ := os.ReadFile(unit)
	os.WriteFile(bad, []byte(strings.Replace(string(text), "ProtectSystem=strict", "ProtectSystem=strictest", 1)), 0o644)
	if out, _ := exec.Command(sa, "verify", bad).CombinedOutput(); !strings.Contains(string(out), "strictest") {
		t.Errorf("systemd-analyze verify did not report a bad ProtectSystem value: %s", out)
	}
}

// TestSystemdAnalyzeSecurity: the offline exposure score is "OK" (< 2.0 of 10).
func TestSystemdAnalyzeSecurity(t *testing.T) {
	sa := systemdAnalyze(t)
	unit := verifiableUnit(t, imageBinary(t))
	out, err := exec.Command(sa, "security", "--offline=yes", "--threshold=19", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security --offline=yes --threshold=19 (exposure above 1.9): %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Log(lines[len(lines)-1])
}
