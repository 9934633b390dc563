// Package playground holds the web page served at / : plain HTML, CSS and
// JavaScript, embedded in the binary, that try each capability through the
// public API. It makes no request to any other origin, which its
// Content-Security-Policy enforces.
package playground

import (
	"embed"
	"io/fs"
	"path"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every page response: this origin
// only, no inline script or style, no plugins, no framing. Images may also
// be blob: URLs, which is how the page shows what the user picked and what
// the API answered without sending either anywhere.
const CSP = "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Index is the page itself.
const Index = "index.html"

// File returns an embedded file and its media type; ok is false for a
// name that is not one of the page's files.
func File(name string) (data []byte, contentType string, ok bool) {
	if !fs.ValidPath(name) || name == "." {
		return nil, "", false
	}
	data, err := static.ReadFile("static/" + name)
	if err != nil {
		return nil, "", false
	}
	return data, contentTypes[path.Ext(name)], true
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
}

// Names lists the page's files.
func Names() []string {
	entries, _ := static.ReadDir("static")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
