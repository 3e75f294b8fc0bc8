package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads, expands, decodes, defaults and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse is Load for bytes already read; it uses os.LookupEnv for ${ENV}.
func Parse(data []byte) (*Config, error) {
	return parse(data, os.LookupEnv)
}

func parse(data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("file is empty")
		}
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	cfg := &Config{}
	cfg.Warnings = expandEnv(&root, lookupEnv)

	var problems []string
	checkKeys(&root, reflect.TypeOf(Config{}), "", &problems, map[*yaml.Node]bool{})
	if len(problems) > maxProblems {
		problems = append(problems[:maxProblems], fmt.Sprintf("… and %d more", len(problems)-maxProblems))
	}
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	if err := root.Decode(cfg); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	cfg.applyDefaults()
	if problems := cfg.validate(); len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	cfg.acceptMCPAudience()
	return cfg, nil
}

// Error lists every problem found in a configuration.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	return fmt.Sprintf("%d problems:\n  - %s", len(e.Problems), strings.Join(e.Problems, "\n  - "))
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces ${NAME} in every scalar value (never in keys), after
// parsing, so that a value holding YAML syntax cannot change the structure.
// Unset variables expand to "" and are returned as warnings.
func expandEnv(n *yaml.Node, lookupEnv func(string) (string, bool)) []string {
	var warnings []string
	seen := map[string]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c)
			}
		case yaml.MappingNode:
			for i := 1; i < len(n.Content); i += 2 {
				walk(n.Content[i])
			}
		case yaml.ScalarNode:
			if !strings.Contains(n.Value, "${") {
				return
			}
			n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
				name := envRef.FindStringSubmatch(ref)[1]
				v, ok := lookupEnv(name)
				if !ok && !seen[name] {
					seen[name] = true
					warnings = append(warnings, fmt.Sprintf("environment variable %s is not set (line %d); it expands to an empty string", name, n.Line))
				}
				return v
			})
			// A quoted "${PORT}" stays a string; an unquoted one may now
			// be a number or boolean, so let YAML re-resolve its tag.
			if n.Style == 0 {
				n.Tag = ""
			}
		}
	}
	walk(n)
	return warnings
}

// maxProblems caps the unknown keys reported at once.
const maxProblems = 20

// checkKeys walks the YAML tree beside the Go type and reports keys that
// the type does not have, by their full path. Each aliased node is checked
// once, so a small file of many aliases cannot multiply the work.
func checkKeys(n *yaml.Node, t reflect.Type, path string, problems *[]string, seen map[*yaml.Node]bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			checkKeys(c, t, path, problems, seen)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if !seen[n.Alias] {
			seen[n.Alias] = true
			checkKeys(n.Alias, t, path, problems, seen)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // yaml.Decode reports the type mismatch
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if key == "<<" { // a YAML merge key: its mapping's keys are this struct's
				checkKeys(n.Content[i+1], t, path, problems, seen)
				continue
			}
			f, ok := fields[key]
			if !ok {
				*problems = append(*problems, fmt.Sprintf("%s (line %d): unknown key; known keys here: %s",
					join(path, key), n.Content[i].Line, strings.Join(sortedKeys(fields), ", ")))
				continue
			}
			checkKeys(n.Content[i+1], f.Type, join(path, key), problems, seen)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), problems, seen)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), problems, seen)
		}
	}
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	fields := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f
	}
	return fields
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
