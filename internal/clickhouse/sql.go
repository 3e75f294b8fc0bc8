package clickhouse

import "github.com/clickgate/clickgate/internal/chsql"

// The statements clickgate sends to ClickHouse. Each quotes every name
// with package chsql; tests parse them with the real ClickHouse engine.

// CreateHTTPUserSQL creates a user whose password ClickHouse checks at the
// named http_authentication server (clickgate's /clickhouse/auth).
func CreateHTTPUserSQL(user, authServer string) (string, error) {
	u, err := chsql.QuoteIdentifier(user)
	if err != nil {
		return "", err
	}
	s, err := chsql.QuoteString(authServer)
	if err != nil {
		return "", err
	}
	return "CREATE USER IF NOT EXISTS " + u + " IDENTIFIED WITH http SERVER " + s, nil
}

// CreateImpersonationTargetSQL creates a user nobody can log in as; the
// service account runs queries as it with EXECUTE AS.
func CreateImpersonationTargetSQL(user string) (string, error) {
	u, err := chsql.QuoteIdentifier(user)
	if err != nil {
		return "", err
	}
	return "CREATE USER IF NOT EXISTS " + u + " NOT IDENTIFIED", nil
}

// GrantRolesSQL grants roles to user.
func GrantRolesSQL(roles []string, user string) (string, error) {
	return roleStatement("GRANT ", roles, " TO ", user)
}

// RevokeRolesSQL revokes roles from user.
func RevokeRolesSQL(roles []string, user string) (string, error) {
	return roleStatement("REVOKE ", roles, " FROM ", user)
}

func roleStatement(verb string, roles []string, prep, user string) (string, error) {
	r, err := chsql.QuoteIdentifiers(roles)
	if err != nil {
		return "", err
	}
	u, err := chsql.QuoteIdentifier(user)
	if err != nil {
		return "", err
	}
	return verb + r + prep + u, nil
}

// ExecuteAsPrefix is what impersonate mode puts before a query.
func ExecuteAsPrefix(user string) (string, error) {
	u, err := chsql.QuoteIdentifier(user)
	if err != nil {
		return "", err
	}
	return "EXECUTE AS " + u + " ", nil
}

// RoleGrantsSQL lists the roles granted to user.
func RoleGrantsSQL(user string) (string, error) {
	u, err := chsql.QuoteString(user)
	if err != nil {
		return "", err
	}
	return "SELECT granted_role_name FROM system.role_grants WHERE user_name = " + u + " FORMAT TSVRaw", nil
}
