// Package problems collects what is wrong with a configuration, each
// finding under the path of the key to fix, so that every problem in a
// file is reported at once.
package problems

import (
	"fmt"
	"net/url"
)

// List is the findings so far; the zero value is empty and ready.
type List struct{ items []string }

// Add records a problem at path ("server.listen: …").
func (l *List) Add(path, format string, args ...any) {
	l.items = append(l.items, path+": "+fmt.Sprintf(format, args...))
}

// Required records a problem when value is empty; what says what to set.
func (l *List) Required(path, value, what string) {
	if value == "" {
		l.Add(path, "missing; set it to %s", what)
	}
}

// URL records a problem unless raw is an absolute http(s) URL.
func (l *List) URL(path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		l.Add(path, "%q is not an http(s) URL", raw)
	}
}

// Items returns the findings in the order they were added.
func (l *List) Items() []string { return l.items }
