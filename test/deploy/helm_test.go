package deploy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
)

func chartDir(t testing.TB) string { return filepath.Join(root(t), "deploy", "helm", "clickgate") }

// object is one rendered Kubernetes object.
type object map[string]any

func (o object) kind() string { s, _ := o["kind"].(string); return s }

// get walks maps and lists: get("spec", "template", "spec", "containers", 0).
func (o object) get(path ...any) any {
	var cur any = map[string]any(o)
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = m[k]
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			cur = l[k]
		}
	}
	return cur
}

// rendered is a chart rendered like `helm template`: the objects and the
// text of each template file.
type rendered struct {
	objects []object
	files   map[string]string
}

func (r rendered) byKind(kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func (r rendered) one(t *testing.T, kind string) object {
	t.Helper()
	objs := r.byKind(kind)
	if len(objs) != 1 {
		t.Fatalf("%d objects of kind %s, want 1", len(objs), kind)
	}
	return objs[0]
}

// render renders the chart with values over values.yaml, as `helm template`.
func render(t *testing.T, values map[string]any) (rendered, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	vals, err := chartutil.ToRenderValues(chrt, values, common.ReleaseOptions{
		Name: "cg", Namespace: "clickgate", IsInstall: true, Revision: 1,
	}, nil)
	if err != nil {
		return rendered{}, err
	}
	files, err := engine.Render(chrt, vals)
	if err != nil {
		return rendered{}, err
	}
	r := rendered{files: files}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		dec := yaml.NewDecoder(strings.NewReader(files[name]))
		for {
			var o map[string]any
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s is not YAML: %v\n%s", name, err, files[name])
			}
			if o != nil {
				r.objects = append(r.objects, object(o))
			}
		}
	}
	return r, nil
}

func mustRender(t *testing.T, values map[string]any) rendered {
	t.Helper()
	r, err := render(t, values)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	return r
}

// Dummy secret values: each must appear in the rendered Secret only.
const (
	dummySealKey      = "dummy-seal-key-5f1c0e"
	dummyTicketSecret = "dummy-ticket-secret-a93b"
	dummyCHPassword   = "dummy-clickhouse-password-77e2"
	dummyBrokerKeys   = `{"keys":"dummy-broker-signing-key-c0ffee"}`
)

func secretValues() map[string]any {
	return map[string]any{
		"secret": map[string]any{
			"env": map[string]any{
				"CLICKGATE_SEAL_KEY":      dummySealKey,
				"CLICKGATE_TICKET_SECRET": dummyTicketSecret,
				"CLICKHOUSE_PASSWORD":     dummyCHPassword,
			},
			"files": map[string]any{"broker-keys.json": dummyBrokerKeys},
		},
	}
}

func TestHelmLint(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"defaults":       nil,
		"secret values":  secretValues(),
		"existingSecret": {"existingSecret": "clickgate-keys", "serviceMonitor": map[string]any{"enabled": true}},
	} {
		t.Run(name, func(t *testing.T) {
			linter := lint.RunAll(chartDir(t), values, "clickgate")
			for _, m := range linter.Messages {
				t.Logf("helm lint: %s", m.Error())
			}
			if linter.HighestSeverity >= support.WarningSev {
				t.Fatalf("helm lint found warnings or errors (see above)")
			}
		})
	}
}

func TestHelmDeployment(t *testing.T) {
	r := mustRender(t, secretValues())
	d := r.one(t, "Deployment")
	if got := d.get("spec", "replicas"); got != 2 {
		t.Errorf("replicas = %v, want 2 by default", got)
	}
	pod := object(d.get("spec", "template", "spec").(map[string]any))
	if len(pod.get("containers").([]any)) != 1 {
		t.Fatalf("want one container")
	}
	c := object(pod.get("containers", 0).(map[string]any))

	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if got := c.get(probe, "httpGet", "path"); got != path {
			t.Errorf("%s path = %v, want %s", probe, got, path)
		}
		if got := c.get(probe, "httpGet", "port"); got != "http" {
			t.Errorf("%s port = %v, want the named port http", probe, got)
		}
		if got := c.get(probe, "httpGet", "scheme"); got != nil {
			t.Errorf("%s scheme = %v without TLS", probe, got)
		}
	}
	if got := c.get("ports", 0, "containerPort"); got != 8443 {
		t.Errorf("containerPort = %v, want 8443", got)
	}
	if c.get("resources", "requests", "cpu") == nil || c.get("resources", "limits", "memory") == nil {
		t.Errorf("resources missing: %v", c.get("resources"))
	}

	// Security: non-root, read-only root, no capabilities, no escalation.
	if pod.get("securityContext", "runAsNonRoot") != true || pod.get("securityContext", "runAsUser") != 65532 {
		t.Errorf("pod securityContext = %v", pod.get("securityContext"))
	}
	if c.get("securityContext", "readOnlyRootFilesystem") != true ||
		c.get("securityContext", "allowPrivilegeEscalation") != false ||
		c.get("securityContext", "runAsNonRoot") != true {
		t.Errorf("container securityContext = %v", c.get("securityContext"))
	}
	if drop, _ := c.get("securityContext", "capabilities", "drop").([]any); len(drop) != 1 || drop[0] != "ALL" {
		t.Errorf("capabilities drop = %v, want [ALL]", c.get("securityContext", "capabilities", "drop"))
	}
	if pod.get("automountServiceAccountToken") != false {
		t.Errorf("automountServiceAccountToken should be false")
	}

	// The keys come from the Secret, as env (secretKeyRef) and as files.
	secretName := r.one(t, "Secret").get("metadata", "name")
	env := map[string]object{}
	for _, e := range c.get("env").([]any) {
		e := object(e.(map[string]any))
		env[e.get("name").(string)] = e
	}
	for _, name := range []string{"CLICKGATE_SEAL_KEY", "CLICKGATE_TICKET_SECRET", "CLICKHOUSE_PASSWORD"} {
		e, ok := env[name]
		if !ok {
			t.Errorf("env %s missing", name)
			continue
		}
		if e.get("value") != nil {
			t.Errorf("env %s has a plain value", name)
		}
		if e.get("valueFrom", "secretKeyRef", "name") != secretName || e.get("valueFrom", "secretKeyRef", "key") != name {
			t.Errorf("env %s = %v, want secretKeyRef %v/%s", name, e.get("valueFrom"), secretName, name)
		}
	}
	if env["CLICKGATE_STATE_DIR"].get("value") != "/var/lib/clickgate" {
		t.Errorf("CLICKGATE_STATE_DIR = %v", env["CLICKGATE_STATE_DIR"])
	}
	volumes := map[string]object{}
	for _, v := range pod.get("volumes").([]any) {
		v := object(v.(map[string]any))
		volumes[v.get("name").(string)] = v
	}
	if volumes["secrets"].get("secret", "secretName") != secretName {
		t.Errorf("secrets volume = %v, want Secret %v", volumes["secrets"], secretName)
	}
	if volumes["config"].get("configMap", "name") != r.one(t, "ConfigMap").get("metadata", "name") {
		t.Errorf("config volume = %v", volumes["config"])
	}
	mounts := map[string]object{}
	for _, m := range c.get("volumeMounts").([]any) {
		m := object(m.(map[string]any))
		mounts[m.get("mountPath").(string)] = m
	}
	for path, want := range map[string]struct {
		volume   string
		readOnly bool
	}{
		"/etc/clickgate":         {"config", true},
		"/run/secrets/clickgate": {"secrets", true},
		"/var/lib/clickgate":     {"state", false},
		"/tmp":                   {"tmp", false},
	} {
		m, ok := mounts[path]
		if !ok {
			t.Errorf("nothing mounted at %s", path)
			continue
		}
		if m.get("name") != want.volume || (m.get("readOnly") == true) != want.readOnly {
			t.Errorf("mount %s = %v, want volume %s readOnly %v", path, m, want.volume, want.readOnly)
		}
	}

	// A changed configuration or Secret changes the pod template (rolls the pods).
	ann := func(r rendered, key string) any {
		return r.one(t, "Deployment").get("spec", "template", "metadata", "annotations", key)
	}
	other := secretValues()
	other["config"] = map[string]any{"mcp": map[string]any{"enabled": false}}
	r2 := mustRender(t, other)
	if ann(r, "checksum/config") == nil || ann(r, "checksum/config") == ann(r2, "checksum/config") {
		t.Errorf("checksum/config %v → %v: a config change must change it", ann(r, "checksum/config"), ann(r2, "checksum/config"))
	}
	if ann(r, "checksum/secret") != ann(r2, "checksum/secret") {
		t.Errorf("checksum/secret changed with the config only")
	}
	other = secretValues()
	other["secret"].(map[string]any)["env"].(map[string]any)["CLICKGATE_SEAL_KEY"] = "another"
	if r3 := mustRender(t, other); ann(r, "checksum/secret") == ann(r3, "checksum/secret") {
		t.Errorf("checksum/secret unchanged after a change of the Secret")
	}
}

func TestHelmSecretsOnlyInSecret(t *testing.T) {
	r := mustRender(t, secretValues())
	sec := r.one(t, "Secret")
	data := sec.get("data").(map[string]any)
	decoded := map[string]string{}
	for k, v := range data {
		b, err := base64.StdEncoding.DecodeString(v.(string))
		if err != nil {
			t.Fatalf("Secret key %s is not base64: %v", k, err)
		}
		decoded[k] = string(b)
	}
	for key, want := range map[string]string{
		"CLICKGATE_SEAL_KEY": dummySealKey, "CLICKGATE_TICKET_SECRET": dummyTicketSecret,
		"CLICKHOUSE_PASSWORD": dummyCHPassword, "broker-keys.json": dummyBrokerKeys,
	} {
		if decoded[key] != want {
			t.Errorf("Secret %s = %q, want %q", key, decoded[key], want)
		}
	}
	// No secret value in any rendered file, in plain text or base64, except
	// the Secret's own file in base64.
	for name, text := range r.files {
		for _, v := range []string{dummySealKey, dummyTicketSecret, dummyCHPassword, "dummy-broker-signing-key-c0ffee"} {
			if strings.Contains(text, v) {
				t.Errorf("%s contains the secret value %q in plain text", name, v)
			}
			if !strings.HasSuffix(name, "/secret.yaml") && strings.Contains(text, base64.StdEncoding.EncodeToString([]byte(v))) {
				t.Errorf("%s contains the secret value %q in base64", name, v)
			}
		}
	}
	cm := r.one(t, "ConfigMap")
	cfgText := cm.get("data", "clickgate.yaml").(string)
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(cfgText), &cfg); err != nil {
		t.Fatalf("ConfigMap clickgate.yaml: %v", err)
	}
	ch := object(cfg).get("clickhouse").(map[string]any)
	if ch["ticket_secret"] != "${CLICKGATE_TICKET_SECRET}" || ch["password"] != "${CLICKHOUSE_PASSWORD}" {
		t.Errorf("config references the secrets as %v / %v, want ${ENV}", ch["ticket_secret"], ch["password"])
	}
	if got := object(cfg).get("server", "listen"); got != "0.0.0.0:8443" {
		t.Errorf("server.listen = %v, want 0.0.0.0:8443", got)
	}
	if got := object(cfg).get("server", "metrics_listen"); got != "0.0.0.0:9464" {
		t.Errorf("server.metrics_listen = %v, want 0.0.0.0:9464", got)
	}

	// A literal secret in config is refused at render time.
	for _, bad := range []map[string]any{
		{"broker": map[string]any{"enabled": true, "upstream": "corp", "seal_key": dummySealKey}},
		{"clickhouse": map[string]any{"ticket_secret": dummyTicketSecret}},
		{"clickhouse": map[string]any{"password": "hunter2"}},
		{"clickhouse": map[string]any{"accounts": []any{map[string]any{"role": "a", "user": "u", "password": "pw"}}}},
		{"token_processors": map[string]any{"corp": map[string]any{"client_secret": "s3cret"}}},
		{"audit": map[string]any{"clickhouse": map[string]any{"password": "pw"}}},
	} {
		_, err := render(t, map[string]any{"config": bad})
		if err == nil || !strings.Contains(err.Error(), "holds a literal value") {
			t.Errorf("config %v rendered (err %v); a literal secret must be refused", bad, err)
		}
	}
	if _, err := render(t, map[string]any{"config": map[string]any{"broker": map[string]any{"seal_key": "${CLICKGATE_SEAL_KEY}"}}}); err != nil {
		t.Errorf("a ${ENV} reference refused: %v", err)
	}
}

func TestHelmExistingSecret(t *testing.T) {
	r := mustRender(t, map[string]any{"existingSecret": "clickgate-keys"})
	if n := len(r.byKind("Secret")); n != 0 {
		t.Errorf("%d Secrets rendered with existingSecret, want 0", n)
	}
	d := r.one(t, "Deployment")
	if d.get("spec", "template", "metadata", "annotations", "checksum/secret") != nil {
		t.Errorf("checksum/secret with an existing Secret")
	}
	var buf bytes.Buffer
	for _, f := range r.files {
		buf.WriteString(f)
	}
	if got := strings.Count(buf.String(), "clickgate-keys"); got < 4 {
		t.Errorf("existingSecret named %d times, want the volume and 3 secretKeyRefs", got)
	}
	pod := object(d.get("spec", "template", "spec").(map[string]any))
	for _, v := range pod.get("volumes").([]any) {
		if v := object(v.(map[string]any)); v.get("name") == "secrets" && v.get("secret", "secretName") != "clickgate-keys" {
			t.Errorf("secrets volume = %v", v)
		}
	}
}

func TestHelmServicePDBServiceMonitor(t *testing.T) {
	r := mustRender(t, nil)
	svc := r.one(t, "Service")
	ports := map[string]any{}
	for _, p := range svc.get("spec", "ports").([]any) {
		p := object(p.(map[string]any))
		ports[p.get("name").(string)] = p.get("port")
	}
	if ports["http"] != 8443 || ports["metrics"] != 9464 {
		t.Errorf("Service ports = %v", ports)
	}
	pdb := r.one(t, "PodDisruptionBudget")
	if pdb.get("spec", "maxUnavailable") != 1 {
		t.Errorf("PDB spec = %v", pdb.get("spec"))
	}
	sel := r.one(t, "Deployment").get("spec", "selector", "matchLabels")
	if !equalYAML(pdb.get("spec", "selector", "matchLabels"), sel) || !equalYAML(svc.get("spec", "selector"), sel) {
		t.Errorf("PDB/Service selectors differ from the Deployment's %v", sel)
	}
	if n := len(r.byKind("ServiceMonitor")); n != 0 {
		t.Errorf("ServiceMonitor rendered while disabled")
	}

	r = mustRender(t, map[string]any{"serviceMonitor": map[string]any{"enabled": true}})
	sm := r.one(t, "ServiceMonitor")
	if sm.get("endpoints") != nil || sm.get("spec", "endpoints", 0, "path") != "/metrics" || sm.get("spec", "endpoints", 0, "port") != "metrics" {
		t.Errorf("ServiceMonitor spec = %v", sm.get("spec"))
	}
	if !equalYAML(sm.get("spec", "selector", "matchLabels"), sel) {
		t.Errorf("ServiceMonitor selector %v", sm.get("spec", "selector"))
	}

	// Metrics on the main listener, with TLS: the probes and the scrape speak HTTPS.
	r = mustRender(t, map[string]any{
		"metrics":        map[string]any{"port": 0},
		"serviceMonitor": map[string]any{"enabled": true},
		"config":         map[string]any{"server": map[string]any{"tls": map[string]any{"cert_file": "/run/secrets/clickgate/tls.crt", "key_file": "/run/secrets/clickgate/tls.key"}}},
	})
	sm = r.one(t, "ServiceMonitor")
	if sm.get("spec", "endpoints", 0, "port") != "http" || sm.get("spec", "endpoints", 0, "scheme") != "https" {
		t.Errorf("ServiceMonitor endpoint with TLS on the main port = %v", sm.get("spec", "endpoints", 0))
	}
	c := object(r.one(t, "Deployment").get("spec", "template", "spec", "containers", 0).(map[string]any))
	if c.get("livenessProbe", "httpGet", "scheme") != "HTTPS" || c.get("readinessProbe", "httpGet", "scheme") != "HTTPS" {
		t.Errorf("probes with TLS: %v / %v", c.get("livenessProbe"), c.get("readinessProbe"))
	}
	if len(r.one(t, "Service").get("spec", "ports").([]any)) != 1 {
		t.Errorf("a metrics port on the Service with metrics.port 0")
	}
	if n := len(r.byKind("PodDisruptionBudget")); n != 1 {
		t.Errorf("%d PDBs", n)
	}
	if n := len(mustRender(t, map[string]any{"podDisruptionBudget": map[string]any{"enabled": false}}).byKind("PodDisruptionBudget")); n != 0 {
		t.Errorf("PDB rendered while disabled")
	}
}

func equalYAML(a, b any) bool {
	x, err1 := yaml.Marshal(a)
	y, err2 := yaml.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y) && a != nil
}
