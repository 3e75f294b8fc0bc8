// Package store is what the broker remembers that sealing cannot: which
// one-time values were used, and the generation of each refresh-token
// family. Its implementations live beneath it (filestore, chstore) and
// run the shared contract of storetest.
package store

import (
	"context"
	"errors"
	"time"
)

// Store errors.
var (
	// ErrReplay reports a one-time value (code, state, refresh token)
	// presented a second time.
	ErrReplay = errors.New("oauth: already used")
	// ErrRevoked reports a refresh-token family that was revoked or is
	// unknown.
	ErrRevoked = errors.New("oauth: revoked")
)

// Store remembers what sealing cannot: which one-time values were used,
// and the generation of each refresh-token family. Replicas share one.
type Store interface {
	// Use marks id as used until exp; ErrReplay if it was used before.
	Use(ctx context.Context, id string, exp time.Time) error
	// StartFamily records a new refresh-token family at generation 0,
	// unless the family was revoked already (a replayed code).
	StartFamily(ctx context.Context, family string, exp time.Time) error
	// Rotate advances family from gen to gen+1. If gen is not the current
	// generation, the family is revoked and ErrReplay returned; a revoked
	// or unknown family gives ErrRevoked.
	Rotate(ctx context.Context, family string, gen int) error
	// Revoke ends family (recording it until exp if it is unknown).
	Revoke(ctx context.Context, family string, exp time.Time) error
}
