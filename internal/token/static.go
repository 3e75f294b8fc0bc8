package token

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/problems"
)

// staticType checks opaque tokens against a list kept in a file, for
// services that call clickgate without an IdP. The file holds SHA-256
// hashes rather than the tokens, so that reading it does not give them
// away. One token per line, '#' starts a comment:
//
//	sha256:<64 hex digits> <user name> [group,group,...]
//
// Make the hash with: printf %s "$TOKEN" | sha256sum
var staticType = Type{New: newStaticProcessor, Validate: validateStatic, ChecksAudience: func(*Config) bool { return false }, Describe: func(c *Config) []string {
	return []string{"tokens looked up by SHA-256 in " + c.TokensFile + " (read at start); they carry no expiry or audience"}
}}

func validateStatic(c *Config, path string, p *problems.List) {
	p.Required(path+".tokens_file", c.TokensFile, "a file of 'sha256:<hex> <user> [groups]' lines")
	if c.TokensFile == "" {
		return
	}
	if data := readable(path+".tokens_file", c.TokensFile, p); data != nil {
		if _, err := parseStaticTokens(data); err != nil {
			p.Add(path+".tokens_file", "%v", err)
		}
	}
}

func parseStaticTokens(data []byte) (map[[sha256.Size]byte]map[string]any, error) {
	tokens := map[[sha256.Size]byte]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) > 3 {
			return nil, fmt.Errorf("line %d: want 'sha256:<hex> <user> [group,group]', got %d fields", n, len(fields))
		}
		digest, ok := strings.CutPrefix(fields[0], "sha256:")
		b, err := hex.DecodeString(digest)
		if !ok || err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("line %d: the first field must be sha256: and 64 hex digits (printf %%s \"$TOKEN\" | sha256sum)", n)
		}
		sum := [sha256.Size]byte(b)
		if _, dup := tokens[sum]; dup {
			return nil, fmt.Errorf("line %d: the same token is listed twice", n)
		}
		if len(fields) < 2 {
			return nil, fmt.Errorf("line %d: the user name is missing", n)
		}
		claims := map[string]any{"sub": fields[1]}
		if len(fields) == 3 {
			var groups []any
			for _, g := range strings.Split(fields[2], ",") {
				if g != "" {
					groups = append(groups, g)
				}
			}
			claims["groups"] = groups
		}
		tokens[sum] = claims
	}
	return tokens, sc.Err()
}

func newStaticProcessor(name string, cfg *Config, _ Options) (Processor, error) {
	data, err := os.ReadFile(cfg.TokensFile) // validateStatic read it too; it may have changed since
	if err == nil {
		var tokens map[[sha256.Size]byte]map[string]any
		if tokens, err = parseStaticTokens(data); err == nil {
			return &staticProcessor{name: name, tokens: tokens, policy: policyFor(name, cfg)}, nil
		}
	}
	return nil, fmt.Errorf("token_processors.%s.tokens_file: %v", name, err)
}

type staticProcessor struct {
	name   string
	tokens map[[sha256.Size]byte]map[string]any
	policy *claimPolicy
}

func (p *staticProcessor) Name() string { return p.name }

// Accepts only listed tokens, so an unknown one is tried by the other
// processors; Recognizes them, so a listed one never goes to an IdP.
func (p *staticProcessor) Accepts(t *Token) bool {
	_, ok := p.tokens[sha256.Sum256([]byte(t.Raw))]
	return ok
}

func (p *staticProcessor) Recognizes(t *Token) bool { return p.Accepts(t) }

func (p *staticProcessor) Verify(_ context.Context, t *Token) (*identity.Identity, error) {
	claims, ok := p.tokens[sha256.Sum256([]byte(t.Raw))]
	if !ok {
		return nil, errorf(ReasonInactive, p.name, "the token is not in the list")
	}
	return p.policy.identity(claims)
}
