// Package cimd fetches OAuth Client ID Metadata Documents: the client
// metadata an MCP client publishes at the https URL it uses as its
// client_id, fetched with SSRF protection and cached.
package cimd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"
)

// Metadata is a client's metadata (RFC 7591 fields), as found in a
// Client ID Metadata Document or a registration request.
type Metadata struct {
	ClientID                string   `json:"client_id"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	SoftwareID              string   `json:"software_id,omitempty"`
	SoftwareVersion         string   `json:"software_version,omitempty"`
}

// Options configures a Fetcher. Zero values take the defaults.
type Options struct {
	// AllowPrivate permits loopback, private, link-local and other
	// non-public addresses. For development and tests only.
	AllowPrivate bool
	MaxBytes     int64         // default 64 KiB
	Timeout      time.Duration // whole fetch; default 5 s
	CacheTTL     time.Duration // default 10 min
	CacheSize    int           // default 1024
	// MaxInFlight bounds fetches running at once (default 16): each
	// authorization request may name a new URL, and clickgate should not
	// become anyone's crawler.
	MaxInFlight int
	// RootCAs trusted for the https fetch; nil means the system roots.
	RootCAs *x509.CertPool
	// LookupIP resolves a host name; nil means net.DefaultResolver.
	LookupIP func(ctx context.Context, host string) ([]netip.Addr, error)
}

// ErrRefused wraps every reason a Client ID Metadata Document is refused.
var ErrRefused = errors.New("oauth: client metadata document refused")

func refused(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, a...))
}

// Fetcher fetches and caches Client ID Metadata Documents with SSRF
// protection: https only, non-public addresses refused (checked both
// after resolution and on the socket actually connected, which defeats
// DNS rebinding), no proxy, no redirects, size and time limits.
type Fetcher struct {
	opts   Options
	client *http.Client
	cache  *expirable.LRU[string, *Metadata]
	// failed remembers refusals briefly, so that a URL that fails (slowly,
	// say) is not fetched again for every request naming it.
	failed   *expirable.LRU[string, error]
	group    singleflight.Group
	inFlight chan struct{}
}

// failureTTL is how long a refused document stays refused.
const failureTTL = 30 * time.Second

// NewFetcher returns a fetcher with opts.
func NewFetcher(opts Options) *Fetcher {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 64 << 10
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = 10 * time.Minute
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 1024
	}
	if opts.LookupIP == nil {
		opts.LookupIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 16
	}
	f := &Fetcher{opts: opts, inFlight: make(chan struct{}, opts.MaxInFlight),
		failed: expirable.NewLRU[string, error](opts.CacheSize, nil, failureTTL)}
	dialer := &net.Dialer{
		Timeout: opts.Timeout,
		// Checked on the address really connected to.
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return refused("unexpected dial address %q", address)
			}
			if !f.allowed(ap.Addr()) {
				return refused("address %s is not public", ap.Addr())
			}
			return nil
		},
	}
	tr := &http.Transport{
		Proxy: nil, // never through a proxy: it would hide the real destination
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, err := f.resolve(ctx, host)
			if err != nil {
				return nil, err
			}
			var lastErr error
			for _, ip := range ips {
				c, err := dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
				if err == nil {
					return c, nil
				}
				lastErr = err
			}
			return nil, lastErr
		},
		TLSClientConfig:        &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    opts.Timeout,
		ResponseHeaderTimeout:  opts.Timeout,
		MaxIdleConns:           16,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 16 << 10,
	}
	f.client = &http.Client{
		Transport: tr,
		Timeout:   opts.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return refused("redirects are not followed")
		},
	}
	f.cache = expirable.NewLRU[string, *Metadata](opts.CacheSize, nil, opts.CacheTTL)
	return f
}

// resolve returns the host's addresses, refusing the host if any of them
// is not allowed (a name must not mix public and private addresses).
func (f *Fetcher) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		if !f.allowed(ip) {
			return nil, refused("address %s is not public", ip)
		}
		return []netip.Addr{ip}, nil
	}
	ips, err := f.opts.LookupIP(ctx, host)
	if err != nil {
		return nil, refused("resolve %s: %v", host, err)
	}
	if len(ips) == 0 {
		return nil, refused("resolve %s: no addresses", host)
	}
	for _, ip := range ips {
		if !f.allowed(ip) {
			return nil, refused("%s resolves to %s, which is not public", host, ip)
		}
	}
	return ips, nil
}

func (f *Fetcher) allowed(ip netip.Addr) bool {
	return f.opts.AllowPrivate || IsPublicAddr(ip)
}

var nonPublicPrefixes = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this" network
		"100.64.0.0/10",   // carrier-grade NAT
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // TEST-NET-1
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // TEST-NET-2
		"203.0.113.0/24",  // TEST-NET-3
		"240.0.0.0/4",     // reserved, broadcast
		"64:ff9b::/96",    // NAT64 (may reach IPv4 private space)
		"64:ff9b:1::/48",  // local-use NAT64
		"100::/64",        // discard
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4 (embeds IPv4)
		"fec0::/10",       // site-local (deprecated)
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// IsPublicAddr reports whether ip is a globally routable unicast address:
// not loopback, private, link-local, unspecified, multicast or reserved.
func IsPublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.Zone() != "" || ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() ||
		ip.IsMulticast() || !ip.IsGlobalUnicast() {
		return false
	}
	for _, p := range nonPublicPrefixes {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// IsClientID reports whether clientID looks like a Client ID Metadata
// Document URL (as opposed to a registered or configured client id).
func IsClientID(clientID string) bool {
	return strings.HasPrefix(clientID, "https://")
}

// ValidateURL checks the form of a client_id URL: https, a host, a
// path, no userinfo, fragment or dot segments.
func ValidateURL(clientID string) (*url.URL, error) {
	u, err := url.Parse(clientID)
	if err != nil {
		return nil, refused("client_id is not a URL")
	}
	switch {
	case u.Scheme != "https":
		return nil, refused("client_id must be an https URL")
	case u.Host == "" || u.Hostname() == "" || u.Opaque != "":
		return nil, refused("client_id has no host")
	case u.User != nil:
		return nil, refused("client_id must not contain userinfo")
	case u.Fragment != "" || strings.Contains(clientID, "#"):
		return nil, refused("client_id must not contain a fragment")
	case u.Path == "" || u.Path == "/":
		return nil, refused("client_id must have a path")
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return nil, refused("client_id must not contain dot segments")
		}
	}
	return u, nil
}

// Fetch returns the validated metadata document for clientID, from the
// cache when possible.
func (f *Fetcher) Fetch(ctx context.Context, clientID string) (*Metadata, error) {
	if md, ok := f.cache.Get(clientID); ok {
		return md, nil
	}
	if _, err := ValidateURL(clientID); err != nil {
		return nil, err
	}
	if err, ok := f.failed.Get(clientID); ok {
		return nil, err
	}
	v, err, _ := f.group.Do(clientID, func() (any, error) {
		select {
		case f.inFlight <- struct{}{}:
			defer func() { <-f.inFlight }()
		default:
			return nil, refused("too many client metadata documents are being fetched; try again shortly")
		}
		md, err := f.fetch(context.WithoutCancel(ctx), clientID)
		if err != nil {
			f.failed.Add(clientID, err)
			return nil, err
		}
		f.cache.Add(clientID, md)
		return md, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Metadata), nil
}

func (f *Fetcher) fetch(ctx context.Context, clientID string) (*Metadata, error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientID, nil)
	if err != nil {
		return nil, refused("%v", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrRefused) {
			return nil, err
		}
		return nil, refused("fetch: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, refused("fetch: status %d", resp.StatusCode)
	}
	if resp.ContentLength > f.opts.MaxBytes {
		return nil, refused("document larger than %d bytes", f.opts.MaxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.MaxBytes+1))
	if err != nil {
		return nil, refused("read: %v", err)
	}
	if int64(len(body)) > f.opts.MaxBytes {
		return nil, refused("document larger than %d bytes", f.opts.MaxBytes)
	}
	var md Metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, refused("document is not JSON: %v", err)
	}
	if md.ClientID != clientID {
		return nil, refused("document client_id %q does not equal its URL", md.ClientID)
	}
	if len(md.RedirectURIs) == 0 {
		return nil, refused("document has no redirect_uris")
	}
	for _, r := range md.RedirectURIs {
		if u, err := url.Parse(r); err != nil || u.Scheme == "" || u.Fragment != "" || u.User != nil {
			return nil, refused("invalid redirect_uri %q", r)
		}
	}
	switch md.TokenEndpointAuthMethod {
	case "", "none", "private_key_jwt":
	default:
		// CIMD clients have no shared secret.
		return nil, refused("token_endpoint_auth_method %q is not allowed", md.TokenEndpointAuthMethod)
	}
	return &md, nil
}
