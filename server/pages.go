package server

import (
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/server/openapi"
	"github.com/imgserve/imgserve/server/playground"
)

// The playground page and the OpenAPI document hold no data and take none,
// so they are open even when API keys are required; the page asks for a
// key to send with its API calls.
func init() {
	addFeature(
		Feature{Method: "GET", Pattern: "/", Access: AccessOpen, Handle: (*Server).playgroundIndex},
		Feature{Method: "GET", Pattern: "/playground/{file}", Access: AccessOpen, Handle: (*Server).playgroundFile},
		Feature{Method: "GET", Pattern: "/openapi.json", Access: AccessOpen, Handle: (*Server).openAPI},
	)
}

var errPlaygroundOff = newError(http.StatusNotFound, "not_found", "the playground is turned off (--playground=false); the API is under /v1 and /v2, described at /openapi.json")

func (s *Server) playgroundIndex(ctx *fasthttp.RequestCtx, _ routeParams) {
	s.page(ctx, playground.Index)
}

func (s *Server) playgroundFile(ctx *fasthttp.RequestCtx, p routeParams) {
	s.page(ctx, p.Var("file"))
}

// page answers one of the playground's files, each with the
// Content-Security-Policy that keeps the page to this origin.
func (s *Server) page(ctx *fasthttp.RequestCtx, name string) {
	if !s.opts.Playground {
		writeError(ctx, errPlaygroundOff)
		return
	}
	data, contentType, ok := playground.File(name)
	if !ok {
		writeError(ctx, newError(http.StatusNotFound, "not_found", "no such playground file"))
		return
	}
	h := &ctx.Response.Header
	h.Set("Content-Security-Policy", playground.CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// The files change with the binary: revalidate rather than cache.
	h.Set("Cache-Control", "no-cache")
	ctx.SetContentType(contentType)
	ctx.SetStatusCode(http.StatusOK)
	writeBody(ctx, data)
}

// openAPI answers the OpenAPI 3.1 document of every route.
func (s *Server) openAPI(ctx *fasthttp.RequestCtx, _ routeParams) {
	doc, err := openapi.JSON()
	if err != nil {
		writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(http.StatusOK)
	writeBody(ctx, doc)
}
