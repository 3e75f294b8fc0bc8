package devidp

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
)

//go:embed pages/*.html
var pageFiles embed.FS

var pages = template.Must(template.ParseFS(pageFiles, "pages/*.html"))

type loginPage struct {
	RequestID string
	Client    string
	Username  string
	Error     string
}

type devicePage struct {
	UserCode  string
	Username  string
	Error     string
	CodeError bool // the error is about the code, not the credentials
}

type confirmPage struct {
	Approval string
	Client   string
	Username string
	Scopes   []string
}

type messagePage struct {
	Title string
	Text  string
}

// securityHeaders keep the pages out of frames and caches and allow no
// script at all.
func securityHeaders(h http.Header) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

func (p *IdP) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		p.log.Error("rendering page", "page", name, "error", err)
		http.Error(w, "clickgate: the page could not be shown", http.StatusInternalServerError)
		return
	}
	securityHeaders(w.Header())
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (p *IdP) message(w http.ResponseWriter, status int, title, text string) {
	p.render(w, status, "message", messagePage{Title: title, Text: text})
}
