package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/gateway"
	"github.com/clickgate/clickgate/internal/keyring"
	"github.com/clickgate/clickgate/internal/oauth"
	"github.com/clickgate/clickgate/internal/oauth/cimd"
	"github.com/clickgate/clickgate/internal/oauth/seal"
	"github.com/clickgate/clickgate/internal/oauth/store"
	"github.com/clickgate/clickgate/internal/oauth/store/chstore"
	"github.com/clickgate/clickgate/internal/oauth/store/filestore"
	"github.com/clickgate/clickgate/internal/oauth/upstream"
	"github.com/clickgate/clickgate/internal/token"
)

// brokerSealKeyFile keeps the seal key of a single process when
// broker.seal_key is not set; it lives next to the signing keys.
func brokerSealKeyFile(cfg *config.Config) string {
	return filepath.Join(filepath.Dir(cfg.Broker.KeyFile), "broker-seal-key")
}

// openBrokerKeys opens the broker's signing keys (created on first start).
func openBrokerKeys(cfg *config.Config, opt Options) (*keyring.Ring, error) {
	return keyring.Open(cfg.Broker.KeyFile, opt.Now, func(err error) { opt.Logger.Warn("broker signing keys", "error", err) })
}

// brokerProcessor verifies the broker's own access tokens with the keys
// that sign them; the verifier tries it after directory.processors.
func brokerProcessor(cfg *config.Config, keys *keyring.Ring, opt token.Options) token.Extra {
	pc := cfg.BrokerProcessorConfig()
	return token.Extra{Processor: token.NewJWTProcessor(config.BrokerProcessor, pc, oauth.VerificationKeys(keys), opt), CacheTTL: pc.CacheTTL}
}

// openBrokerStore opens the store broker.store names. The ClickHouse
// store is purged of expired rows daily while the server runs.
func (s *Server) openBrokerStore(opt Options) (store.Store, error) {
	cfg := s.cfg
	if cfg.Broker.Store != config.BrokerStoreClickHouse {
		return filestore.Open(cfg.Broker.StoreFile, opt.Now)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := chstore.New(ctx, storeClient(s.clickhouse.Service, cfg.ClickHouse), cfg.Broker.StoreTable, opt.Now)
	if err != nil {
		return nil, fmt.Errorf("broker.store clickhouse: %w", err)
	}
	s.background = append(s.background, func(ctx context.Context) {
		for wait := time.Minute; ; wait = 24 * time.Hour {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if err := st.Purge(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("broker store: purging expired rows", "error", err)
			}
		}
	})
	return st, nil
}

// storeClient is how the broker's ClickHouse store reaches ClickHouse:
// with several nodes, always the first one, not through the pool. Replay
// detection needs one place that sees every use of a code or refresh
// token; replicas that copy rows later would each accept one use.
func storeClient(service *clickhouse.Client, ch *config.ClickHouse) *clickhouse.Client {
	if service == nil || len(ch.URLs) < 2 {
		return service
	}
	first, err := url.Parse(ch.URLs[0] + "/")
	if err != nil { // validated by config
		return service
	}
	return &clickhouse.Client{URL: first, User: service.User, Password: service.Password,
		HTTP: &http.Client{Transport: gateway.NewTransport(), Timeout: 30 * time.Second}}
}

// mountBroker serves the OAuth broker's endpoints on mux.
func (s *Server) mountBroker(mux *http.ServeMux, keys *keyring.Ring, reg prometheus.Registerer, opt Options) error {
	cfg := s.cfg
	key, err := cfg.BrokerSealKey()
	if err == nil && key == nil {
		key, err = seal.LoadOrCreateKey(brokerSealKeyFile(cfg))
	}
	if err != nil {
		return err
	}
	sealer, err := seal.New(key)
	if err != nil {
		return err
	}
	sealer.Now = opt.Now
	st, err := s.openBrokerStore(opt)
	if err != nil {
		return err
	}
	pc := cfg.TokenProcessors[cfg.Broker.Upstream]
	clientID, secret := pc.ClientID, pc.ClientSecret
	if cfg.BrokerUpstreamIsDevIdP() {
		clientID = config.DevIdPBrokerClient
	}
	httpClient := opt.HTTPClient
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 10 * time.Second}
	}
	up, err := upstream.New(cfg.Broker.Upstream, pc, clientID, secret, cfg.Server.PublicURL+oauth.PathCallback, cfg.Broker.UpstreamScopes, httpClient)
	if err != nil {
		return err
	}
	var scopes []string
	for _, sc := range []string{cfg.MCP.Scopes.Read, cfg.MCP.Scopes.Write} {
		if sc != "" {
			scopes = append(scopes, sc)
		}
	}
	var audiences []string
	if cfg.ClickHouse.Mode == config.ModeBearer {
		// ClickHouse verifies the forwarded token itself, trusting
		// clickgate's /oauth/jwks.
		audiences = []string{cfg.ClickHouse.Audience}
	}
	b := oauth.New(oauth.Options{
		Issuer: cfg.Server.PublicURL, Resource: cfg.MCPResource(), Audiences: audiences, Scopes: scopes, Upstream: up,
		Auth: s.auth, Keys: keys, Sealer: sealer, Store: st, Clients: cfg.Broker.Clients,
		Documents: cimd.NewFetcher(cimd.Options{AllowPrivate: cfg.Broker.AllowPrivateClientURLs, RootCAs: opt.ClientMetadataRoots}),
		AccessTTL: cfg.Broker.AccessTokenTTL, RefreshTTL: cfg.Broker.RefreshTokenTTL, Logger: opt.Logger, Now: opt.Now,
		Registerer: reg, Audit: s.audit,
	})
	for _, p := range oauth.Paths {
		mux.Handle(p, b)
	}
	return nil
}
