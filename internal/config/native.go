package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/clickgate/clickgate/internal/problems"
)

// StringList is a YAML string or list of strings.
type StringList []string

// UnmarshalYAML takes a scalar as a list of one.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Value == "" {
			*l = nil
			return nil
		}
		*l = StringList{n.Value}
		return nil
	}
	var list []string
	if err := n.Decode(&list); err != nil {
		return err
	}
	*l = list
	return nil
}

// Native URL schemes: plain TCP, or TLS (ClickHouse's secure port).
const (
	NativeSchemeTCP = "tcp"
	NativeSchemeTLS = "tls"
)

// Default native ports of ClickHouse.
const (
	DefaultNativePort       = "9000"
	DefaultNativeSecurePort = "9440"
)

// NativeNode is one parsed clickhouse.native_url entry.
type NativeNode struct {
	Addr string // host:port
	TLS  bool
}

// ParseNativeURL parses tcp://host[:port] or tls://host[:port]; the port
// defaults to 9000 (tcp) or 9440 (tls).
func ParseNativeURL(s string) (NativeNode, error) {
	u, err := url.Parse(s)
	if err != nil {
		return NativeNode{}, fmt.Errorf("%q is not a URL: %v", s, err)
	}
	var n NativeNode
	port := DefaultNativePort
	switch u.Scheme {
	case NativeSchemeTCP:
	case NativeSchemeTLS:
		n.TLS, port = true, DefaultNativeSecurePort
	default:
		return n, fmt.Errorf("%q: the scheme must be tcp:// (or tls:// for ClickHouse's secure port), for example tcp://127.0.0.1:9000", s)
	}
	if u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return n, fmt.Errorf("%q: write only scheme, host and port, for example tcp://127.0.0.1:9000", s)
	}
	if p := u.Port(); p != "" {
		if v, err := strconv.Atoi(p); err != nil || v < 1 || v > 65535 {
			return n, fmt.Errorf("%q: the port must be a number from 1 to 65535", s)
		}
		port = p
	}
	n.Addr = net.JoinHostPort(u.Hostname(), port)
	return n, nil
}

// NativeNodes parses clickhouse.native_url (validated by Load).
func (ch *ClickHouse) NativeNodes() ([]NativeNode, error) {
	var out []NativeNode
	for _, s := range ch.NativeURL {
		n, err := ParseNativeURL(s)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// applyNativeDefaults derives clickhouse.native_url from the HTTP URLs
// when the native listener is on and it is not set.
func (c *Config) applyNativeDefaults() {
	ch := c.ClickHouse
	if c.Server.NativeListen == "" || ch == nil || len(ch.NativeURL) > 0 {
		return
	}
	for _, raw := range ch.URLs {
		u, err := url.Parse(raw)
		if err != nil || u.Hostname() == "" || (u.Scheme != "http" && u.Scheme != "https") {
			continue // reported by validate, or chdb://
		}
		scheme, port := NativeSchemeTCP, DefaultNativePort
		if u.Scheme == "https" {
			scheme, port = NativeSchemeTLS, DefaultNativeSecurePort
		}
		ch.NativeURL = append(ch.NativeURL, scheme+"://"+net.JoinHostPort(u.Hostname(), port))
	}
}

// validateNative checks server.native_listen, server.native_tls and
// clickhouse.native_url.
func (c *Config) validateNative(v *problems.List) {
	s := c.Server
	if (s.NativeTLS.CertFile == "") != (s.NativeTLS.KeyFile == "") {
		v.Add("server.native_tls", "set both cert_file and key_file, or neither")
	}
	if s.NativeTLS.CertFile != "" && s.NativeListen == "" {
		v.Add("server.native_tls", "is set but server.native_listen is not; set the native listener's address (for example 127.0.0.1:9440)")
	}
	if ch := c.ClickHouse; ch != nil {
		for i, raw := range ch.NativeURL {
			if _, err := ParseNativeURL(raw); err != nil {
				v.Add(fmt.Sprintf("clickhouse.native_url[%d]", i), "%v", err)
			}
		}
	}
	if s.NativeListen == "" {
		return
	}
	const path = "server.native_listen"
	host, port, err := net.SplitHostPort(s.NativeListen)
	if err != nil {
		v.Add(path, "%q is not host:port (for example 127.0.0.1:9000)", s.NativeListen)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.Add(path, "%q needs a port number from 1 to 65535 (for example 127.0.0.1:9000)", s.NativeListen)
		return
	}
	for _, other := range []struct{ key, addr string }{{"server.listen", s.Listen}, {"server.metrics_listen", s.MetricsListen}} {
		h, p, err := net.SplitHostPort(other.addr)
		if err == nil && p == port && (h == host || wildcardHost(h) || wildcardHost(host)) {
			v.Add(path, "%q overlaps %s %q; give the native listener its own port", s.NativeListen, other.key, other.addr)
		}
	}
	ch := c.ClickHouse
	switch {
	case ch == nil:
		v.Add(path, "needs a clickhouse section: the native listener relays to ClickHouse's native interface")
	case strings.HasPrefix(ch.URL, ChDBScheme):
		v.Add(path, "cannot serve clickhouse.url chdb://: the embedded engine has no native interface to relay to; remove native_listen")
	case len(ch.NativeURL) == 0:
		v.Add("clickhouse.native_url", "missing; for example tcp://127.0.0.1:9000 (ClickHouse's native port)")
	}
}
