package server

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/valyala/fasthttp"
)

// POST /v1/tokenize serves every model family that has a tokenizer, through
// one small dispatch: a feature registers a tokenizeFunc from its init with
//
//	registerTokenizer(key, f)
//
// where key is a task (every model of that task, whatever its configured
// name) or a client-facing model name. The handler reads "model" from the
// JSON body, looks the name up first as a registered name, then as a
// configured model's task, and calls f with the whole body; f parses the
// rest of it ("input", "ids", ...) and returns the response value. A model
// need not be loaded for this: tokenizers ship with the binary.
//
// Texts are user data: a tokenizeFunc never logs them or echoes them in an
// error message.
type tokenizeFunc func(s *Server, model string, body []byte) (any, error)

var tokenizers = map[string]tokenizeFunc{}

func registerTokenizer(key string, f tokenizeFunc) {
	if _, dup := tokenizers[key]; dup {
		panic("server: tokenizer registered twice: " + key)
	}
	tokenizers[key] = f
}

func init() {
	addFeature(Feature{Method: "POST", Pattern: "/v1/tokenize", Handle: (*Server).tokenize})
}

func (s *Server) tokenize(ctx *fasthttp.RequestCtx, _ routeParams) {
	body, err := requestBody(ctx, s.opts.MaxBodySize)
	if err != nil {
		writeError(ctx, err)
		return
	}
	var req struct {
		Model string `json:"model"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(ctx, newError(http.StatusBadRequest, "bad_request", "body must be JSON: "+err.Error()))
		return
	}
	if req.Model == "" {
		writeError(ctx, newError(http.StatusBadRequest, "bad_request", `"model" is required`))
		return
	}
	f, ok := tokenizers[req.Model]
	if !ok {
		m, found := s.opts.Registry.Get(req.Model)
		if !found {
			writeError(ctx, newError(http.StatusNotFound, "not_found", "unknown model "+strconv.Quote(req.Model)))
			return
		}
		if f, ok = tokenizers[m.Config.Task]; !ok {
			writeError(ctx, newError(http.StatusBadRequest, "bad_request",
				"model "+strconv.Quote(req.Model)+" (task "+m.Config.Task+") has no tokenizer"))
			return
		}
	}
	resp, err := f(s, req.Model, body)
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, http.StatusOK, resp)
}
