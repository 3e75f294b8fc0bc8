// Package oauth holds the stateless core of clickgate's OAuth broker: the
// sealer for transient state shared by replicas, the authorization server
// metadata, PKCE and redirect_uri checks, and the SSRF-safe fetcher for
// Client ID Metadata Documents. It is not wired into the server yet.
package oauth
