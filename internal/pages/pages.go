// Package pages renders clickgate's few HTML pages (sign-in, consent,
// messages) with one accessible layout and strict security headers.
package pages

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
)

//go:embed layout.html
var layout embed.FS

// Parse returns the layout's "head" (its argument is the title) and
// "foot" (its argument is the footer text) templates plus the pages
// matching patterns in fsys.
func Parse(fsys fs.FS, patterns ...string) *template.Template {
	t := template.Must(template.ParseFS(layout, "layout.html"))
	return template.Must(t.ParseFS(fsys, patterns...))
}

// SecurityHeaders keep a page out of frames and caches and allow no
// script at all.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

// Render executes template name of t with data and writes it with status.
func Render(w http.ResponseWriter, log *slog.Logger, t *template.Template, status int, name string, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		log.Error("rendering page", "page", name, "error", err)
		http.Error(w, "clickgate: the page could not be shown", http.StatusInternalServerError)
		return
	}
	SecurityHeaders(w.Header())
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
