// Package oauth is clickgate's OAuth authorization server for MCP clients
// (the broker): the endpoints of Paths (metadata, /oauth/authorize with
// consent, /oauth/callback, /oauth/token, /oauth/register, /oauth/jwks),
// client lookup, PKCE and redirect_uri checks, and the access and refresh
// tokens it issues. The server mounts it when broker.enabled is set
// (internal/server/broker.go), which also adds the processor that
// verifies these access tokens to the token verifier.
//
// Its parts live beneath it, each with one job:
//   - seal: encrypts the transient state replicas share by key (pending
//     sign-ins, codes, refresh tokens, registered clients);
//   - store: what sealing cannot remember (used codes, refresh-token
//     families), with its contract suite (storetest) and implementations
//     in a file (filestore) and in ClickHouse (chstore);
//   - cimd: fetches Client ID Metadata Documents, SSRF-safe;
//   - upstream: the broker as an OAuth client of the identity provider
//     where people sign in.
package oauth
