package config

// RestartKeys are the keys that a running clickgate applies only when it
// starts: a reload (SIGHUP, serve --watch) keeps their running values.
// Every other key is applied by a reload. server.tls counts as one only
// when TLS is turned on or off; new certificate files (or the same files
// renewed) are loaded by a reload.
var RestartKeys = []string{"server.listen", "server.metrics_listen", "server.tls", "server.native_listen", "server.native_tls", "server.max_connections"}

// KeepRestartKeys compares a newly loaded configuration next with the
// running one and, for each of RestartKeys that differs, sets next's
// value back to running's; it returns those keys, in RestartKeys' order.
// A public_url that next left to its default (derived from server.listen
// and TLS) is derived again from the kept values.
func KeepRestartKeys(running, next *Config) (changed []string) {
	r, n := &running.Server, &next.Server
	defaultURL := n.PublicURL == defaultPublicURL(*n)
	for _, k := range []struct {
		key     string
		differs bool
		keep    func()
	}{
		{"server.listen", n.Listen != r.Listen, func() { n.Listen = r.Listen }},
		{"server.metrics_listen", n.MetricsListen != r.MetricsListen, func() { n.MetricsListen = r.MetricsListen }},
		{"server.tls", (n.TLS.CertFile == "") != (r.TLS.CertFile == ""), func() { n.TLS = r.TLS }},
		{"server.native_listen", n.NativeListen != r.NativeListen, func() { n.NativeListen = r.NativeListen }},
		{"server.native_tls", (n.NativeTLS.CertFile == "") != (r.NativeTLS.CertFile == ""), func() { n.NativeTLS = r.NativeTLS }},
		{"server.max_connections", n.MaxConnections != r.MaxConnections, func() { n.MaxConnections = r.MaxConnections }},
	} {
		if k.differs {
			changed = append(changed, k.key)
			k.keep()
		}
	}
	if defaultURL {
		n.PublicURL = defaultPublicURL(*n)
	}
	return changed
}

// defaultPublicURL is server.public_url when the file does not set it.
func defaultPublicURL(s Server) string {
	scheme := "http"
	if s.TLS.CertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + s.Listen
}
