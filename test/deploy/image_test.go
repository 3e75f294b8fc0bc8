package deploy

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	imageUID     = 65532
	stateDir     = "/var/lib/clickgate"
	configInImg  = "/etc/clickgate/clickgate.yaml"
	wantEntrypnt = `["/usr/bin/clickgate", "serve", "--config", "/etc/clickgate/clickgate.yaml"]`
)

// elfLinkage returns the ELF interpreter ("" when static) and DT_NEEDED.
func elfLinkage(t *testing.T, path string) (string, []string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	interp := ""
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				t.Fatal(err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	return interp, libs
}

// assemble runs deploy/rootfs.sh into a temporary directory.
func assemble(t *testing.T, bin string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image")
	cmd := exec.Command(filepath.Join(root(t), "deploy", "rootfs.sh"), bin, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/rootfs.sh: %v\n%s", err, b)
	}
	return out
}

// TestBinaryLinkage: the image's binary is built without cgo and without
// the embedded engine (-tags nochdb), so it is static: no PT_INTERP, no
// DT_NEEDED, and the rootfs carries no library.
func TestBinaryLinkage(t *testing.T) {
	bin := imageBinary(t)
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range info.Settings {
		if s.Key == "CGO_ENABLED" && s.Value != "0" {
			t.Errorf("built with CGO_ENABLED=%s", s.Value)
		}
		if s.Key == "-tags" && !strings.Contains(s.Value, "nochdb") {
			t.Errorf("built with -tags %s, without nochdb", s.Value)
		}
	}
	if interp, libs := elfLinkage(t, bin); interp != "" || len(libs) != 0 {
		t.Errorf("the image's binary is dynamic: PT_INTERP %q, DT_NEEDED %v", interp, libs)
	}
	// A truly static binary gets no libraries at all.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { println(\"hello\") }\n"), 0o644)
	hello := filepath.Join(dir, "hello")
	if err := goBuild(dir, hello, "."); err != nil {
		t.Fatal(err)
	}
	if interp, libs := elfLinkage(t, hello); interp != "" || len(libs) != 0 {
		t.Fatalf("a CGO_ENABLED=0 hello is dynamic: %q %v", interp, libs)
	}
	staticFS := filepath.Join(assemble(t, hello), "rootfs")
	for _, d := range []string{"lib", "lib64", "usr/lib"} {
		if _, err := os.Stat(filepath.Join(staticFS, d)); err == nil {
			t.Errorf("rootfs of a static binary has /%s", d)
		}
	}
}

// instruction is one Containerfile instruction.
type instruction struct{ cmd, args string }

func parseContainerfile(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open(filepath.Join(root(t), "deploy", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cont string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cont == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line = cont + line
		cont = ""
		cmd, args, _ := strings.Cut(line, " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
	}
	return out
}

// TestContainerfile: the instructions parse, start FROM scratch, run as
// 65532, expose 8443, and COPY only what deploy/rootfs.sh assembles.
func TestContainerfile(t *testing.T) {
	ins := parseContainerfile(t)
	known := map[string]bool{"FROM": true, "COPY": true, "ENV": true, "USER": true, "WORKDIR": true, "EXPOSE": true, "LABEL": true, "ENTRYPOINT": true}
	seen := map[string][]string{}
	for _, in := range ins {
		if !known[in.cmd] {
			t.Errorf("unexpected instruction %s %s", in.cmd, in.args)
		}
		seen[in.cmd] = append(seen[in.cmd], in.args)
	}
	if len(ins) == 0 || ins[0].cmd != "FROM" || ins[0].args != "scratch" {
		t.Fatalf("first instruction %v, want FROM scratch", ins[0])
	}
	if got := seen["USER"]; len(got) != 1 || got[0] != "65532:65532" {
		t.Errorf("USER %v", got)
	}
	if got := seen["EXPOSE"]; len(got) != 1 || got[0] != "8443" {
		t.Errorf("EXPOSE %v", got)
	}
	if got := seen["ENV"]; len(got) != 1 || got[0] != "CLICKGATE_STATE_DIR="+stateDir {
		t.Errorf("ENV %v", got)
	}
	var ep []string
	if got := seen["ENTRYPOINT"]; len(got) != 1 || json.Unmarshal([]byte(got[0]), &ep) != nil {
		t.Fatalf("ENTRYPOINT %v is not one JSON array", got)
	}
	if want := []string{"/usr/bin/clickgate", "serve", "--config", configInImg}; strings.Join(ep, " ") != strings.Join(want, " ") {
		t.Errorf("ENTRYPOINT %q, want %q", ep, want)
	}

	ctx := assemble(t, imageBinary(t))
	var stateOwned bool
	for _, c := range seen["COPY"] {
		fields := strings.Fields(c)
		var flags []string
		for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
			flags, fields = append(flags, fields[0]), fields[1:]
		}
		if len(fields) != 2 {
			t.Errorf("COPY %s: want one source and one destination", c)
			continue
		}
		if _, err := os.Stat(filepath.Join(ctx, fields[0])); err != nil {
			t.Errorf("COPY %s: the source is not in the context deploy/rootfs.sh assembles: %v", c, err)
		}
		if fields[1] == stateDir+"/" && strings.Join(flags, " ") == "--chown=65532:65532" {
			stateOwned = true
		}
	}
	if !stateOwned {
		t.Errorf("no COPY --chown=65532:65532 of the state directory %s", stateDir)
	}
	rootfs := filepath.Join(ctx, "rootfs")
	for _, f := range []string{"usr/bin/clickgate", "etc/ssl/certs/ca-certificates.crt", "etc/passwd", "etc/group", "etc/nsswitch.conf"} {
		if fi, err := os.Stat(filepath.Join(rootfs, f)); err != nil || fi.Size() == 0 {
			t.Errorf("rootfs /%s: %v", f, err)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
	if !strings.Contains(string(passwd), "\nclickgate:x:65532:65532:") {
		t.Errorf("/etc/passwd has no clickgate 65532:\n%s", passwd)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("/tmp: %v %v", fi, err)
	}
}

// testConfig serves the dev IdP (which writes its keys to the state dir) with
// an unreachable ClickHouse: /healthz answers, /readyz does not matter.
func testConfig(listen, publicURL string) string {
	return fmt.Sprintf(`server:
  listen: %s
  public_url: %s
token_processors:
  dev:
    type: oidc
    issuer: %s/idp
    audiences: [clickhouse]
    username_claim: email
directory:
  processors: [dev]
clickhouse:
  url: http://127.0.0.1:1
  mode: service
  user: svc
dev_idp:
  enabled: true
  users: [{username: alice, password: alice, email: alice@example.com, groups: [ch-analysts]}]
`, listen, publicURL, publicURL)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitHealthz(t *testing.T, url string, alive func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if aerr := alive(); aerr != nil {
			t.Fatalf("%s: %v; the server is gone: %v", url, err, aerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRootfsRuns runs the assembled rootfs as the image would, without a
// container engine: chrooted into it as uid/gid 65532, the binary runs
// `clickgate version` and `serve` with a mounted-like configuration, answers
// /healthz and writes its keys into the state directory.
func TestRootfsRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root; TestContainerfile checked the rootfs")
	}
	rootfs := filepath.Join(assemble(t, imageBinary(t)), "rootfs")
	// as the Containerfile: COPY --chown=65532:65532 state/ /var/lib/clickgate/
	state := filepath.Join(rootfs, stateDir)
	if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, imageUID, imageUID); err != nil {
		t.Fatal(err)
	}
	// The temporary directory is root's 0700: the chroot is entered as root,
	// then the process drops to 65532, which needs only the tree inside.
	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if err := os.WriteFile(filepath.Join(rootfs, configInImg), []byte(testConfig("127.0.0.1:"+strconv.Itoa(port), base)), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) *exec.Cmd {
		cmd := exec.Command("/usr/bin/clickgate", args...)
		cmd.Path = "/usr/bin/clickgate"
		cmd.Dir = "/"
		cmd.Env = []string{"CLICKGATE_STATE_DIR=" + stateDir, "PATH=/usr/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Chroot:     rootfs,
			Credential: &syscall.Credential{Uid: imageUID, Gid: imageUID, Groups: []uint32{}},
		}
		return cmd
	}
	out, err := run("version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "deploy-test") {
		t.Fatalf("chroot rootfs clickgate version: %v\n%s", err, out)
	}

	cmd := run("serve", "--config", configInImg)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("clickgate serve in the rootfs:\n%s", logs.String())
		}
	})
	alive := func() error {
		select {
		case err := <-done:
			done <- err
			return fmt.Errorf("exited: %v", err)
		default:
			return nil
		}
	}
	waitHealthz(t, base+"/healthz", alive)

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "\nUid:\t65532\t65532\t65532\t65532\n") {
		t.Errorf("serve does not run as 65532:\n%s", status)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(state, "dev-idp-keys.json"), &st); err != nil {
		t.Errorf("no keys in the state directory: %v", err)
	} else if st.Uid != imageUID {
		t.Errorf("keys owned by %d, want %d", st.Uid, imageUID)
	}
}

// podman runs podman, returning its combined output.
func podman(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "podman", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// runOptions are tried in turn until one runs the image: podman's defaults,
// then what this kind of machine needs (crun: "cgroups in hybrid mode not
// supported"; without CAP_SYS_RESOURCE no rlimit may be raised: "setrlimit
// RLIMIT_NOFILE: Operation not permitted").
var runOptions = [][]string{
	nil,
	{"--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"},
}

// TestImage builds deploy/Containerfile with podman and runs it with a
// mounted configuration: /healthz answers on the published port 8443.
func TestImage(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skipf("podman: %v (scripts/install-deploy-tools.sh installs it); TestContainerfile and TestRootfsRuns checked everything up to the build", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	image := fmt.Sprintf("localhost/clickgate-deploy-test:%d", os.Getpid())
	build := assemble(t, imageBinary(t))
	if out, err := podman(ctx, "build", "-q", "-f", filepath.Join(root(t), "deploy", "Containerfile"), "-t", image, build); err != nil {
		t.Skipf("podman build fails here: %v: %s", err, out)
	}
	t.Cleanup(func() { podman(context.Background(), "rmi", "-f", image) })

	var inspect []struct {
		Config struct {
			User         string
			Entrypoint   []string
			ExposedPorts map[string]any
			Env          []string
		}
	}
	out, err := podman(ctx, "image", "inspect", image)
	if err != nil || json.Unmarshal([]byte(out), &inspect) != nil || len(inspect) != 1 {
		t.Fatalf("podman image inspect: %v %s", err, out)
	}
	cfg := inspect[0].Config
	if cfg.User != "65532:65532" || strings.Join(cfg.Entrypoint, " ") != "/usr/bin/clickgate serve --config "+configInImg {
		t.Errorf("image config: user %q entrypoint %q", cfg.User, cfg.Entrypoint)
	}
	if _, ok := cfg.ExposedPorts["8443/tcp"]; !ok {
		t.Errorf("image exposes %v, want 8443/tcp", cfg.ExposedPorts)
	}

	var opts []string
	var failures []string
	for _, o := range runOptions {
		args := append(append([]string{"run", "--rm"}, o...), "--entrypoint", "/usr/bin/clickgate", image, "version")
		out, err := podman(ctx, args...)
		if err == nil && strings.Contains(out, "deploy-test") {
			opts = o
			failures = nil
			break
		}
		failures = append(failures, fmt.Sprintf("podman %s: %v: %s", strings.Join(args, " "), err, out))
	}
	if failures != nil {
		t.Skipf("the image builds but no container runs on this machine:\n%s", strings.Join(failures, "\n"))
	}
	if opts != nil {
		t.Logf("containers run here with %v", opts)
	}

	dir := t.TempDir()
	port := freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	cfgFile := filepath.Join(dir, "clickgate.yaml")
	if err := os.WriteFile(cfgFile, []byte(testConfig("0.0.0.0:8443", base)), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	name := fmt.Sprintf("clickgate-deploy-test-%d", os.Getpid())
	args := append(append([]string{"run", "-d", "--name", name}, opts...),
		"-p", fmt.Sprintf("127.0.0.1:%d:8443", port), "-v", cfgFile+":"+configInImg+":ro", image)
	if out, err := podman(ctx, args...); err != nil {
		t.Fatalf("podman %s: %v: %s", strings.Join(args, " "), err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := podman(context.Background(), "logs", name)
			t.Logf("container logs:\n%s", logs)
		}
		podman(context.Background(), "rm", "-f", "-t", "5", name)
	})
	waitHealthz(t, base+"/healthz", func() error {
		out, err := podman(ctx, "inspect", "-f", "{{.State.Running}}", name)
		if err != nil || out != "true" {
			return fmt.Errorf("running=%s %v", out, err)
		}
		return nil
	})
	if out, err := podman(ctx, "exec", name, "/usr/bin/clickgate", "version"); err != nil || !strings.Contains(out, "deploy-test") {
		t.Errorf("podman exec clickgate version: %v %s", err, out)
	}
	if out, err := podman(ctx, "top", name, "huser", "user"); err != nil || !strings.Contains(out, "\n65532") || !strings.Contains(out, "clickgate") {
		t.Errorf("podman top: the server does not run as 65532: %v\n%s", err, out)
	}
}
