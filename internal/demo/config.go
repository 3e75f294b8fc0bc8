package demo

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
)

//go:embed clickgate.yaml
var configTemplate string

// ConfigParams fill in the demo's clickgate configuration.
type ConfigParams struct {
	Listen    string // host:port
	PublicURL string // http://host:port
	KeyFile   string // the dev IdP's signing keys
	// The broker's signing keys and its store of used codes and refresh
	// tokens (its seal key is kept next to the keys).
	BrokerKeyFile   string
	BrokerStoreFile string
	AlicePassword   string
	BobPassword     string
	ClickHouseURL   string
	Analyst         Account
	Admin           Account
	SessionLog      string
}

// Issuer is the development IdP's issuer.
func (p ConfigParams) Issuer() string { return p.PublicURL + "/idp" }

// WriteConfig writes the configuration to path (mode 0600: it holds the
// ClickHouse passwords).
func WriteConfig(path string, p ConfigParams) error {
	// The configuration expands ${ENV} in every value and has no escape.
	for name, v := range map[string]string{
		"the demo directory": p.KeyFile + p.BrokerKeyFile + p.BrokerStoreFile, "CLICKHOUSE_URL": p.ClickHouseURL,
		"the admin account": p.Admin.User + p.Admin.Password, "the analyst account": p.Analyst.User + p.Analyst.Password,
	} {
		if strings.Contains(v, "${") {
			return fmt.Errorf("%s contains \"${\", which clickgate's configuration would read as an environment variable", name)
		}
	}
	tmpl := template.Must(template.New("clickgate.yaml").Funcs(template.FuncMap{"q": strconv.Quote}).Parse(configTemplate))
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, p); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o600)
}
