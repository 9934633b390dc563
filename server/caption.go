package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/models/caption"
	"github.com/imgserve/imgserve/models/tokenizer"
)

func init() {
	addFeature(Feature{Method: "POST", Pattern: "/v1/caption", Handle: (*Server).caption})
	// Every caption model's tokenizer, and the default model's even when
	// the configuration leaves it out: the tokenizer ships with the binary.
	registerTokenizer(caption.TaskEncoder, captionTokenize)
	registerTokenizer(defaultCaptionModel, captionTokenize)
}

// defaultCaptionModel answers requests that name no model.
const defaultCaptionModel = "vit-gpt2"

// captionRegistries holds each server's caption pipelines, built on first
// use. The key is weak and the entry goes with its server, so test servers
// do not pile up.
var captionRegistries sync.Map // weak.Pointer[Server] -> *caption.Registry

func (s *Server) captions() *caption.Registry {
	return perServer(&captionRegistries, s, func() *caption.Registry {
		return caption.NewRegistry(s.opts.Registry, s.opts.Metrics.Observer)
	})
}

type captionResponse struct {
	Caption string `json:"caption"`
	Model   string `json:"model"`
	Tokens  int    `json:"tokens"`
}

// caption is POST /v1/caption: an image as the body or as multipart field
// "image"; parameters model, max_new_tokens and num_beams from the query
// or form. Privacy: the caption goes to the client only, never to a log.
func (s *Server) caption(ctx *fasthttp.RequestCtx, _ routeParams) {
	u, err := parseUpload(ctx, s.opts.MaxBodySize)
	if err != nil {
		writeError(ctx, err)
		return
	}
	var params caption.Params
	params.MaxNewTokens, err = intParam(u, "max_new_tokens", caption.DefaultMaxNewTokens, 1, caption.MaxNewTokensLimit)
	if err == nil {
		params.NumBeams, err = intParam(u, "num_beams", 1, 1, caption.MaxBeams)
	}
	var data []byte
	if err == nil {
		data, err = u.image("image")
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	pipe, err := s.captions().Get(u.field("model", defaultCaptionModel))
	if err != nil {
		writeError(ctx, err)
		return
	}
	rctx := requestContext(ctx)
	if err := pipe.CheckLoad(rctx); err != nil {
		writeError(ctx, err)
		return
	}
	start := time.Now()
	img, _, err := s.decodeImage(rctx, data, resizeCopies)
	if err != nil {
		writeError(ctx, err)
		return
	}
	decoded := time.Since(start)
	c, err := pipe.Caption(rctx, img, params)
	if errors.Is(err, caption.ErrBadParams) {
		err = newError(http.StatusBadRequest, "bad_request", err.Error())
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set("Server-Timing", fmt.Sprintf("decode;dur=%.2f, encoder;dur=%.2f, generate;dur=%.2f",
		msf(decoded), msf(c.Encode), msf(c.Decode)))
	writeJSON(ctx, http.StatusOK, captionResponse{Caption: c.Text, Model: pipe.Name(), Tokens: len(c.Tokens)})
}

// intParam reads an integer parameter in [lo, hi], def when absent.
func intParam(u *upload, name string, def, lo, hi int) (int, error) {
	v := u.field(name, "")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("%s must be an integer from %d to %d", name, lo, hi))
	}
	return n, nil
}

// maxCaptionTokenizeItems bounds the texts or id lists of one /v1/tokenize.
const maxCaptionTokenizeItems = 256

type detokenizedText struct {
	Index int    `json:"index"`
	Text  string `json:"text"`
}

// captionTokenize serves /v1/tokenize for caption models, with the GPT-2
// tokenizer of the model's assets:
//
//	{"model", "input": "text" | ["text", ...]}  -> {"model", "data": [{"index", "ids"}]}
//	{"model", "ids": [id, ...] | [[id, ...], ...], "skip_special_tokens": bool}
//	                                            -> {"model", "data": [{"index", "text"}]}
//
// Encoding adds no special tokens, as GPT-2's tokenizer. Decoding follows
// transformers' tokenizer.decode: special tokens are kept unless
// skip_special_tokens, and tokenisation spaces are cleaned up as the
// tokenizer's config says.
func captionTokenize(s *Server, model string, body []byte) (any, error) {
	var req struct {
		Model             string          `json:"model"`
		Input             json.RawMessage `json:"input"`
		IDs               json.RawMessage `json:"ids"`
		SkipSpecialTokens bool            `json:"skip_special_tokens"`
	}
	if err := decodeJSON(body, &req, true); err != nil {
		return nil, err
	}
	hasInput, hasIDs := len(bytes.TrimSpace(req.Input)) > 0, len(bytes.TrimSpace(req.IDs)) > 0
	if hasInput == hasIDs {
		return nil, badRequest(`give either "input" (texts to encode) or "ids" (ids to decode)`)
	}
	dir := ""
	if m, ok := s.opts.Registry.Get(model); ok && m.Config.Task == caption.TaskEncoder {
		dir = m.Config.Options["assets"]
	}
	a, err := caption.AssetsFor(dir)
	if err != nil {
		return nil, err
	}
	if hasInput {
		texts, err := oneOrMany[string](req.Input, `"input" must be a string or an array of strings`)
		if err != nil {
			return nil, err
		}
		data := make([]tokenizedText, len(texts))
		for i, t := range texts {
			if len(t) > maxTextBytes {
				return nil, badRequest("input %d: a text of %d bytes; the limit is %d", i, len(t), maxTextBytes)
			}
			data[i] = tokenizedText{Index: i, IDs: a.Tokenizer.Encode(t)}
		}
		return map[string]any{"model": model, "data": data}, nil
	}
	lists, err := oneOrMany[[]int64](req.IDs, `"ids" must be an array of token ids or an array of such arrays`)
	if err != nil {
		return nil, err
	}
	vocab := int64(a.Tokenizer.VocabSize())
	data := make([]detokenizedText, len(lists))
	for i, ids := range lists {
		for _, id := range ids {
			if id < 0 || id >= vocab {
				return nil, badRequest("ids[%d] holds %d; token ids are 0 to %d", i, id, vocab-1)
			}
		}
		data[i] = detokenizedText{Index: i, Text: a.Tokenizer.DecodeInt64(ids,
			tokenizer.DecodeOptions{SkipSpecialTokens: req.SkipSpecialTokens, CleanUpTokenizationSpaces: a.CleanUp})}
	}
	return map[string]any{"model": model, "data": data}, nil
}

// oneOrMany reads a JSON value that is either one T or an array of T.
func oneOrMany[T any](raw json.RawMessage, msg string) ([]T, error) {
	var many []T
	if err := json.Unmarshal(raw, &many); err != nil {
		var one T
		if err := json.Unmarshal(raw, &one); err != nil {
			return nil, badRequest("%s", msg)
		}
		many = []T{one}
	}
	switch {
	case len(many) == 0:
		return nil, badRequest("%s, not empty", msg)
	case len(many) > maxCaptionTokenizeItems:
		return nil, badRequest("%d items; the limit is %d", len(many), maxCaptionTokenizeItems)
	}
	return many, nil
}
