package testkit

import (
	"html"
	"regexp"
	"testing"
)

// FormField returns the value of the form field called name in an HTML
// page, written as name="NAME" value="VALUE" (as clickgate's own pages
// write their hidden fields), with HTML escapes undone. It fails the test
// when the page has no such field with a value.
func FormField(tb testing.TB, page, name string) string {
	tb.Helper()
	re := regexp.MustCompile(`name="` + regexp.QuoteMeta(name) + `" value="([^"]+)"`)
	m := re.FindStringSubmatch(page)
	if m == nil {
		tb.Fatalf("no %s in page:\n%s", re, page)
	}
	return html.UnescapeString(m[1])
}
