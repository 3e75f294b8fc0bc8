package clickhouse

import (
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/chdbtest"
)

// Every statement clickgate generates, for every hostile name, parses in
// the real current ClickHouse engine (chDB 26.x); package chsql's tests
// check that the quoted names read back as exactly the original bytes.
func TestStatementsParseInCurrentClickHouse(t *testing.T) {
	e := chdbtest.Open(t)
	for _, name := range chdbtest.HostileNames {
		if strings.ContainsRune(name, 0) {
			continue // the engine's C API stops at NUL; package chsql's tests check the quoting of NUL
		}
		prefix, _ := ExecuteAsPrefix(name)
		statements := map[string]string{"EXECUTE AS": prefix + "SELECT 1"}
		statements["CREATE USER … http"], _ = CreateHTTPUserSQL(name, name)
		statements["CREATE USER … NOT IDENTIFIED"], _ = CreateImpersonationTargetSQL(name)
		statements["GRANT"], _ = GrantRolesSQL([]string{name, "reader"}, name)
		statements["REVOKE"], _ = RevokeRolesSQL([]string{name}, name)
		statements["role grants"], _ = RoleGrantsSQL(name)
		for kind, sql := range statements {
			ast, err := e.ParseAST(strings.TrimSuffix(sql, " FORMAT TSVRaw"))
			if err != nil {
				t.Errorf("%s for %.40q does not parse: %v", kind, name, err)
				continue
			}
			if strings.Count(ast, "Query") < 1 {
				t.Errorf("%s for %.40q: unexpected AST %q", kind, name, ast)
			}
		}
	}
}
