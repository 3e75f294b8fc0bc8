package token

import (
	"context"
	"errors"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/identity"
)

// googleProcessor is a placeholder until the Google API client lands.
type googleProcessor struct{ name string }

func newGoogleProcessor(name string, cfg *config.TokenProcessor, opt Options) (Processor, error) {
	return &googleProcessor{name: name}, nil
}

func (p *googleProcessor) Name() string          { return p.name }
func (p *googleProcessor) Accepts(t *Token) bool { return false }
func (p *googleProcessor) Verify(ctx context.Context, t *Token) (*identity.Identity, error) {
	return nil, errors.New("not implemented")
}
