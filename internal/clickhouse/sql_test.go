package clickhouse

import "testing"

func TestStatements(t *testing.T) {
	must := func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct{ got, want string }{
		{must(CreateHTTPUserSQL("alice@example.com", "clickgate")), "CREATE USER IF NOT EXISTS `alice@example.com` IDENTIFIED WITH http SERVER 'clickgate'"},
		{must(CreateHTTPUserSQL("o`k", "it's")), "CREATE USER IF NOT EXISTS `o\\`k` IDENTIFIED WITH http SERVER 'it\\'s'"},
		{must(CreateImpersonationTargetSQL("bob")), "CREATE USER IF NOT EXISTS `bob` NOT IDENTIFIED"},
		{must(GrantRolesSQL([]string{"analyst", "reader"}, "a@b")), "GRANT `analyst`, `reader` TO `a@b`"},
		{must(RevokeRolesSQL([]string{"old"}, "a@b")), "REVOKE `old` FROM `a@b`"},
		{must(ExecuteAsPrefix("a\nb")), "EXECUTE AS `a\\nb` "},
		{must(RoleGrantsSQL("o'k")), "SELECT granted_role_name FROM system.role_grants WHERE user_name = 'o\\'k' FORMAT TSVRaw"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got  %s\nwant %s", tc.got, tc.want)
		}
	}
	if _, err := GrantRolesSQL([]string{"ok", ""}, "u"); err == nil {
		t.Error("an empty role name was accepted")
	}
}
