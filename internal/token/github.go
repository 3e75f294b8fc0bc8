package token

import (
	"context"
	"errors"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/identity"
)

// githubProcessor is a placeholder until the GitHub API client lands.
type githubProcessor struct{ name string }

func newGitHubProcessor(name string, cfg *config.TokenProcessor, opt Options) (Processor, error) {
	return &githubProcessor{name: name}, nil
}

func (p *githubProcessor) Name() string          { return p.name }
func (p *githubProcessor) Accepts(t *Token) bool { return false }
func (p *githubProcessor) Verify(ctx context.Context, t *Token) (*identity.Identity, error) {
	return nil, errors.New("not implemented")
}
