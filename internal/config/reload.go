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
	if n.Listen != r.Listen {
		changed = append(changed, "server.listen")
		n.Listen = r.Listen
	}
	if n.MetricsListen != r.MetricsListen {
		changed = append(changed, "server.metrics_listen")
		n.MetricsListen = r.MetricsListen
	}
	if (n.TLS.CertFile == "") != (r.TLS.CertFile == "") {
		changed = append(changed, "server.tls")
		n.TLS = r.TLS
	}
	if n.NativeListen != r.NativeListen {
		changed = append(changed, "server.native_listen")
		n.NativeListen = r.NativeListen
	}
	if (n.NativeTLS.CertFile == "") != (r.NativeTLS.CertFile == "") {
		changed = append(changed, "server.native_tls")
		n.NativeTLS = r.NativeTLS
	}
	if n.MaxConnections != r.MaxConnections {
		changed = append(changed, "server.max_connections")
		n.MaxConnections = r.MaxConnections
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
