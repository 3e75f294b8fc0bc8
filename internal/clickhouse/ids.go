package clickhouse

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
)

// Namespace is the prefix of every session_id and query_id a person
// sends, at the gateway and over the native protocol: ClickHouse matches
// session_id, query_id and replace_running_query per account, so people
// who share one (mapped and service modes) can only ever name ids with
// their own prefix, and never reach each other's sessions or queries.
func Namespace(user string) string {
	h := sha256.Sum256([]byte(user))
	return "cg" + hex.EncodeToString(h[:8]) + "_"
}

// NewQueryID is a random query id in ClickHouse's own (UUID) form.
func NewQueryID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// SettingsOrder is the order to send a set of fixed settings in: by name,
// readonly last, since ClickHouse refuses any setting that comes after
// readonly = 1 in the same request.
func SettingsOrder(set map[string]string) []string {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "readonly":
			return 1
		case b == "readonly":
			return -1
		}
		return strings.Compare(a, b)
	})
	return keys
}

// LookupSetting finds name in set as ClickHouse does, ignoring case.
func LookupSetting(set map[string]string, name string) (string, bool) {
	for k, v := range set {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}
