package devidp

import (
	"embed"
	"net/http"

	"github.com/clickgate/clickgate/internal/pages"
)

//go:embed pages/*.html
var pageFiles embed.FS

var pageTemplates = pages.Parse(pageFiles, "pages/*.html")

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

func (p *IdP) render(w http.ResponseWriter, status int, name string, data any) {
	pages.Render(w, p.log, pageTemplates, status, name, data)
}

func (p *IdP) message(w http.ResponseWriter, status int, title, text string) {
	p.render(w, status, "message", messagePage{Title: title, Text: text})
}
