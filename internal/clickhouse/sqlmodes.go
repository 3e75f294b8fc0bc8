package clickhouse

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// httpAuthMode signs the caller in as their own ClickHouse user, created
// IDENTIFIED WITH http SERVER '<auth_server>', with a clickgate ticket as
// password: ClickHouse asks /clickhouse/auth, which checks the ticket.
type httpAuthMode struct {
	tickets   *Tickets
	provision *Provisioner
}

func (m *httpAuthMode) Upstream(ctx context.Context, c *Caller) (*Upstream, error) {
	// ClickHouse receives the ticket, and asks /clickhouse/auth about it,
	// with HTTP Basic authentication, whose user-id cannot contain ':'
	// (RFC 7617): ClickHouse would sign in the part before the colon,
	// another user, and record a failed login for them.
	if strings.Contains(c.Principal.User, ":") {
		return nil, accessDenied("clickgate: the ClickHouse user name %q contains ':', which http_auth mode cannot send (HTTP Basic authentication); map people to names without ':'", c.Principal.User)
	}
	if err := m.provision.Ensure(ctx, c.Principal); err != nil {
		return nil, provisioningError(err)
	}
	ticket, err := m.tickets.Issue(c.Principal.User)
	if err != nil {
		return nil, err
	}
	return &Upstream{Header: basic(c.Principal.User, ticket), Account: c.Principal.User}, nil
}

// impersonateMode runs each query as the caller with EXECUTE AS, from a
// service account granted IMPERSONATE on the callers.
type impersonateMode struct {
	header    http.Header
	provision *Provisioner
}

func (m *impersonateMode) Upstream(ctx context.Context, c *Caller) (*Upstream, error) {
	if err := m.provision.Ensure(ctx, c.Principal); err != nil {
		return nil, provisioningError(err)
	}
	prefix, err := ExecuteAsPrefix(c.Principal.User)
	if err != nil {
		return nil, accessDenied("clickgate: %v", err)
	}
	return &Upstream{Header: m.header, QueryPrefix: prefix, Account: c.Principal.User}, nil
}

func provisioningError(err error) error {
	var ex *Exception
	if errors.As(err, &ex) {
		return &Error{Status: http.StatusBadGateway, Code: ex.Code, Name: "PROVISIONING_FAILED",
			Msg: "clickgate: could not provision the ClickHouse user: " + ex.Message}
	}
	return &Error{Status: http.StatusBadGateway, Code: CodeNetworkError, Name: "NETWORK_ERROR",
		Msg: "clickgate: could not provision the ClickHouse user: " + err.Error()}
}
