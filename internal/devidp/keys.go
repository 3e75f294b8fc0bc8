package devidp

import (
	"crypto/ecdsa"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/clickgate/clickgate/internal/keyring"
)

// signingKey and publicKey present the keys of the key file (a
// keyring.Ring) to the OpenID provider.
var (
	_ op.SigningKey = (*signingKey)(nil)
	_ op.Key        = (*publicKey)(nil)
)

type signingKey struct {
	id  string
	key *ecdsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return keyring.Algorithm }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ jwk jose.JSONWebKey }

func (k *publicKey) ID() string                         { return k.jwk.KeyID }
func (k *publicKey) Algorithm() jose.SignatureAlgorithm { return keyring.Algorithm }
func (k *publicKey) Use() string                        { return k.jwk.Use }
func (k *publicKey) Key() any                           { return k.jwk.Key }
