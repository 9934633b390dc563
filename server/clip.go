package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"math"
	"mime"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/index"
	"github.com/imgserve/imgserve/models/clip"
	"github.com/imgserve/imgserve/preprocess"
	"github.com/imgserve/imgserve/server/admission"
)

// CLIP embeddings and reverse image search:
//
//	POST   /v1/embeddings                    OpenAI-style embeddings of texts and images
//	POST   /v1/tokenize                      (tokenize.go) CLIP ids, for models of the clip tasks
//	GET    /v1/collections                   every collection with its count and dimension
//	GET    /v1/collections/{c}               one collection
//	PUT    /v1/collections/{c}               create one with index parameters
//	DELETE /v1/collections/{c}
//	PUT    /v1/collections/{c}/items/{id}    index an image, a text or a vector
//	DELETE /v1/collections/{c}/items/{id}
//	POST   /v1/collections/{c}/search        the k nearest items to an image, a text or a vector
//
// Texts are user queries: they are embedded and dropped, never logged, never
// stored (an item indexed from a text keeps only its vector and metadata) and
// never quoted in error messages.
func init() {
	addFeature(
		Feature{Method: "POST", Pattern: "/v1/embeddings", Handle: (*Server).embeddings},
		Feature{Method: "GET", Pattern: "/v1/collections", Handle: (*Server).listCollections},
		Feature{Method: "GET", Pattern: "/v1/collections/{c}", Handle: (*Server).getCollection},
		Feature{Method: "PUT", Pattern: "/v1/collections/{c}", Handle: (*Server).createCollection},
		Feature{Method: "DELETE", Pattern: "/v1/collections/{c}", Handle: (*Server).deleteCollection},
		Feature{Method: "PUT", Pattern: "/v1/collections/{c}/items/{id}", Handle: (*Server).putItem},
		Feature{Method: "DELETE", Pattern: "/v1/collections/{c}/items/{id}", Handle: (*Server).deleteItem},
		Feature{Method: "POST", Pattern: "/v1/collections/{c}/search", Handle: (*Server).searchCollection},
	)
	registerTokenizer(clip.TaskVision, clipTokenize)
	registerTokenizer(clip.TaskText, clipTokenize)
}

const (
	// defaultCLIPModel is used when a request names no model.
	defaultCLIPModel = "clip-vit-b32"
	// maxClipInputs bounds the texts of one /v1/embeddings or /v1/tokenize
	// request; maxClipImages its images, whose 224x224 inputs take 600 KB
	// each while the request runs.
	maxClipInputs = 256
	maxClipImages = 64
	defaultK      = 10
	// maxTextBytes bounds one text: tokenizing costs time in its whole
	// length, though CLIP reads 77 tokens of it (a few hundred bytes).
	maxTextBytes = 16 << 10
)

// checkText refuses an empty or overlong text, without quoting it.
func checkText(s string) error {
	switch {
	case s == "":
		return badRequest("empty text")
	case len(s) > maxTextBytes:
		return badRequest("a text of %d bytes; the limit is %d", len(s), maxTextBytes)
	}
	return nil
}

func badRequest(format string, args ...any) error {
	return newError(http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...))
}

// clipError gives the clip and index packages' errors their status; others
// go to classify as they are.
func clipError(err error) error {
	msg := func() string { return strings.TrimPrefix(strings.TrimPrefix(err.Error(), "clip: "), "index: ") }
	switch {
	case errors.Is(err, clip.ErrUnknownModel), errors.Is(err, index.ErrNotFound):
		return newError(http.StatusNotFound, "not_found", msg())
	case errors.Is(err, clip.ErrNotCLIP), errors.Is(err, clip.ErrNoTower),
		errors.Is(err, index.ErrDimension), errors.Is(err, index.ErrBadK), errors.Is(err, index.ErrBadVector),
		errors.Is(err, index.ErrBadID), errors.Is(err, index.ErrMetadata), errors.Is(err, index.ErrBadName),
		errors.Is(err, index.ErrParams):
		return newError(http.StatusBadRequest, "bad_request", msg())
	case errors.Is(err, index.ErrExists):
		return newError(http.StatusConflict, "conflict", msg())
	case errors.Is(err, index.ErrLimit):
		return newError(http.StatusConflict, "limit_reached", msg())
	case errors.Is(err, index.ErrStorage):
		return newError(http.StatusServiceUnavailable, "index_unavailable", msg())
	case errors.Is(err, clip.ErrConfig), errors.Is(err, clip.ErrTokenizer):
		return newError(http.StatusInternalServerError, "misconfigured", msg())
	}
	return err
}

func (s *Server) clipTowers(model string) (*clip.Towers, error) {
	tw, err := clip.Resolve(s.opts.Registry, model)
	return tw, clipError(err)
}

// clipInput is one thing to embed: a text or an image's encoded bytes.
type clipInput struct {
	text    string
	image   []byte
	isImage bool
}

// embed returns the embeddings of inputs in order, and the number of text
// tokens read. Texts and images go to their towers as two requests, each
// split into batches by the clip package.
func (s *Server) embed(ctx context.Context, tw *clip.Towers, in []clipInput) ([][]float32, int, error) {
	var texts []string
	var textAt, imageAt []int
	for i, x := range in {
		if x.isImage {
			imageAt = append(imageAt, i)
		} else {
			texts, textAt = append(texts, x.text), append(textAt, i)
		}
	}
	// Refuse at once what the towers could not take in time, before any
	// image is decoded.
	if err := tw.CheckLoad(ctx, len(imageAt) > 0, len(texts) > 0); err != nil {
		return nil, 0, clipError(err)
	}
	out := make([][]float32, len(in))
	tokens := 0
	if len(texts) > 0 {
		vecs, n, err := tw.EmbedTexts(ctx, texts)
		if err != nil {
			return nil, 0, clipError(err)
		}
		for j, i := range textAt {
			out[i] = vecs[j]
		}
		tokens = n
	}
	if len(imageAt) > 0 {
		if err := s.reserveImages(ctx, in, imageAt); err != nil {
			return nil, 0, err
		}
		vecs, err := tw.EmbedImages(ctx, len(imageAt), func(j int) (*image.NRGBA, error) {
			img, _, err := s.decodeReserved(ctx, in[imageAt[j]].image)
			if err != nil && len(in) > 1 {
				err = fmt.Errorf("input %d: %w", imageAt[j], err)
			}
			return img, err
		})
		if err != nil {
			return nil, 0, clipError(err)
		}
		for j, i := range imageAt {
			out[i] = vecs[j]
		}
	}
	return out, tokens, nil
}

// reserveImages reads the headers of a request's images, checks their
// pixels together, and reserves what decoding them takes at its peak:
// EmbedImages decodes one image per core at a time and keeps only its
// 224x224 input, so the largest few images are what is held at once.
func (s *Server) reserveImages(ctx context.Context, in []clipInput, at []int) error {
	costs := make([]int64, len(at))
	var pixels int64
	for j, i := range at {
		info, err := preprocess.DecodeConfig(in[i].image, s.opts.ImageLimits)
		if err != nil {
			if len(in) > 1 {
				err = fmt.Errorf("input %d: %w", i, err)
			}
			return err
		}
		pixels += int64(info.Width) * int64(info.Height)
		costs[j] = imageCost(info, resizeCopies)
	}
	if pixels > maxRequestPixels {
		return newError(http.StatusRequestEntityTooLarge, "image_too_large",
			fmt.Sprintf("the request's images hold %d pixels together; the limit is %d", pixels, maxRequestPixels))
	}
	slices.Sort(costs)
	var peak int64
	for _, c := range costs[max(0, len(costs)-runtime.GOMAXPROCS(0)):] {
		peak += c
	}
	return admission.Reserve(ctx, peak)
}

// isJSONBody tells a JSON body from an image or a form: by its media type,
// or by a leading '{' when the client sent none or curl -d's
// application/x-www-form-urlencoded. No image format starts with '{'.
func isJSONBody(ctx *fasthttp.RequestCtx) bool {
	mt, _, _ := mime.ParseMediaType(string(ctx.Request.Header.ContentType()))
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		return true
	}
	if mt != "" && mt != "application/x-www-form-urlencoded" {
		return false
	}
	return bytes.HasPrefix(bytes.TrimLeft(ctx.Request.Body(), " \t\r\n"), []byte("{"))
}

// decodeJSON reads a JSON body, refusing fields it does not know, so that a
// typo ("txt") is a 400 rather than a silently different request.
func decodeJSON(data []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return badRequest("malformed JSON body: %v", err)
	}
	if dec.More() {
		return badRequest("malformed JSON body: data after the object")
	}
	return nil
}

// decodeBase64Image accepts standard base64, padded or not, optionally as a
// data: URL.
func decodeBase64Image(s string) ([]byte, error) {
	if strings.HasPrefix(s, "data:") {
		if i := strings.Index(s, "base64,"); i >= 0 {
			s = s[i+len("base64,"):]
		}
	}
	s = strings.TrimRight(s, "=")
	data, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return nil, badRequest("image is not valid base64: %v", err)
	}
	if len(data) == 0 {
		return nil, newError(http.StatusBadRequest, "empty_image", "the image is empty")
	}
	return data, nil
}

// ---- /v1/embeddings ----

type embeddingItem struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string
}

type embeddingsResponse struct {
	Object string          `json:"object"`
	Data   []embeddingItem `json:"data"`
	Model  string          `json:"model"`
	Usage  struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// embeddings is OpenAI's POST /v1/embeddings, extended to images: "input" is
// a string or an array whose items are strings, {"text": "..."} or
// {"image": "<base64>"}. A raw image body or a multipart "image" part embeds
// that one image (model and encoding_format then come from the query or
// form). encoding_format "base64" returns little-endian float32 bytes, as
// OpenAI's clients request by default.
func (s *Server) embeddings(ctx *fasthttp.RequestCtx, _ routeParams) {
	var (
		model, format string
		in            []clipInput
	)
	if isJSONBody(ctx) {
		body, err := requestBody(ctx, s.opts.MaxBodySize)
		if err != nil {
			writeError(ctx, err)
			return
		}
		var req struct {
			Model          string          `json:"model"`
			Input          json.RawMessage `json:"input"`
			EncodingFormat string          `json:"encoding_format"`
		}
		// Lenient: OpenAI clients send fields (user, dimensions) that do not
		// apply here.
		if err := decodeJSON(body, &req, false); err != nil {
			writeError(ctx, err)
			return
		}
		model, format = req.Model, req.EncodingFormat
		if in, err = parseEmbeddingInputs(req.Input); err != nil {
			writeError(ctx, err)
			return
		}
	} else {
		u, err := parseUpload(ctx, s.opts.MaxBodySize)
		if err != nil {
			writeError(ctx, err)
			return
		}
		img, err := u.image("image")
		if err != nil {
			writeError(ctx, err)
			return
		}
		model, format = u.field("model", ""), u.field("encoding_format", "")
		in = []clipInput{{image: img, isImage: true}}
	}
	if model == "" {
		model = defaultCLIPModel
	}
	if format == "" {
		format = "float"
	}
	if format != "float" && format != "base64" {
		writeError(ctx, badRequest("encoding_format must be float or base64"))
		return
	}
	tw, err := s.clipTowers(model)
	if err != nil {
		writeError(ctx, err)
		return
	}
	vecs, tokens, err := s.embed(requestContext(ctx), tw, in)
	if err != nil {
		writeError(ctx, err)
		return
	}
	resp := embeddingsResponse{Object: "list", Model: model, Data: make([]embeddingItem, len(vecs))}
	resp.Usage.PromptTokens, resp.Usage.TotalTokens = tokens, tokens
	for i, v := range vecs {
		resp.Data[i] = embeddingItem{Object: "embedding", Index: i, Embedding: v}
		if format == "base64" {
			resp.Data[i].Embedding = base64Floats(v)
		}
	}
	writeJSON(ctx, http.StatusOK, resp)
}

func base64Floats(v []float32) string {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}

func parseEmbeddingInputs(raw json.RawMessage) ([]clipInput, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badRequest(`"input" is required: a string, or an array of strings, {"text": ...} or {"image": base64}`)
	}
	var items []json.RawMessage
	if raw[0] == '[' {
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, badRequest(`"input" must be a string or an array: %v`, err)
		}
	} else {
		items = []json.RawMessage{raw}
	}
	switch {
	case len(items) == 0:
		return nil, badRequest(`"input" is empty`)
	case len(items) > maxClipInputs:
		return nil, badRequest(`"input" has %d items; the limit is %d`, len(items), maxClipInputs)
	}
	in := make([]clipInput, len(items))
	images := 0
	for i, item := range items {
		x, err := parseEmbeddingInput(item)
		if err != nil {
			return nil, badRequest("input %d: %s", i, classify(err).msg)
		}
		if x.isImage {
			images++
		}
		in[i] = x
	}
	if images > maxClipImages {
		return nil, badRequest(`"input" has %d images; the limit is %d`, images, maxClipImages)
	}
	return in, nil
}

func parseEmbeddingInput(item json.RawMessage) (clipInput, error) {
	var text string
	switch item[0] {
	case '"':
		if err := json.Unmarshal(item, &text); err != nil {
			return clipInput{}, badRequest("malformed string")
		}
	case '{':
		var obj struct {
			Text  *string `json:"text"`
			Image *string `json:"image"`
		}
		if err := decodeJSON(item, &obj, true); err != nil {
			return clipInput{}, badRequest(`want {"text": "..."} or {"image": "<base64>"}`)
		}
		switch {
		case (obj.Text == nil) == (obj.Image == nil):
			return clipInput{}, badRequest(`give exactly one of "text" and "image"`)
		case obj.Image != nil:
			data, err := decodeBase64Image(*obj.Image)
			if err != nil {
				return clipInput{}, err
			}
			return clipInput{image: data, isImage: true}, nil
		}
		text = *obj.Text
	default:
		return clipInput{}, badRequest("token arrays and other values are not supported; send a string, {\"text\"} or {\"image\"}")
	}
	if err := checkText(text); err != nil {
		return clipInput{}, err
	}
	return clipInput{text: text}, nil
}

// ---- /v1/tokenize for CLIP models ----

type tokenizedText struct {
	Index int   `json:"index"`
	IDs   []int `json:"ids"`
	// Truncated: the text is longer than the text tower's 77 tokens; ids is
	// what the tower reads (cut, still ending with <|endoftext|>).
	Truncated bool `json:"truncated,omitempty"`
}

// clipTokenize answers {"model", "input": "text" or ["text", ...]} with each
// text's ids, framed by <|startoftext|> and <|endoftext|>, unpadded.
func clipTokenize(s *Server, model string, body []byte) (any, error) {
	var req struct {
		Model string          `json:"model"`
		Input json.RawMessage `json:"input"`
	}
	if err := decodeJSON(body, &req, true); err != nil {
		return nil, err
	}
	var texts []string
	in := bytes.TrimSpace(req.Input)
	switch {
	case len(in) == 0 || string(in) == "null":
		return nil, badRequest(`"input" is required: a string or an array of strings`)
	case in[0] == '[':
		if err := json.Unmarshal(in, &texts); err != nil {
			return nil, badRequest(`"input" must be a string or an array of strings`)
		}
	default:
		var t string
		if err := json.Unmarshal(in, &t); err != nil {
			return nil, badRequest(`"input" must be a string or an array of strings`)
		}
		texts = []string{t}
	}
	switch {
	case len(texts) == 0:
		return nil, badRequest(`"input" is empty`)
	case len(texts) > maxClipInputs:
		return nil, badRequest(`"input" has %d items; the limit is %d`, len(texts), maxClipInputs)
	}
	for i, t := range texts {
		if len(t) > maxTextBytes {
			return nil, badRequest("input %d: a text of %d bytes; the limit is %d", i, len(t), maxTextBytes)
		}
	}
	tw, err := s.clipTowers(model)
	if err != nil {
		return nil, err
	}
	ids, truncated, err := tw.Tokenize(texts)
	if err != nil {
		return nil, clipError(err)
	}
	data := make([]tokenizedText, len(ids))
	for i := range ids {
		data[i] = tokenizedText{Index: i, IDs: ids[i], Truncated: truncated[i]}
	}
	return map[string]any{"model": model, "data": data}, nil
}

// ---- collections ----

// clipQuery is an item to index or a search: exactly one of an image, a
// text and a vector.
type clipQuery struct {
	model    string
	image    []byte
	text     *string
	vector   []float32
	k        int
	metadata json.RawMessage
	search   index.SearchOptions
}

// readClipQuery parses a JSON body {"image" (base64) | "text" | "vector",
// "k", "metadata", "model"}, or a raw image body or multipart "image" (or
// form field "text") with k, metadata and model as query or form fields.
func (s *Server) readClipQuery(ctx *fasthttp.RequestCtx) (*clipQuery, error) {
	q := &clipQuery{k: defaultK}
	if isJSONBody(ctx) {
		body, err := requestBody(ctx, s.opts.MaxBodySize)
		if err != nil {
			return nil, err
		}
		var req struct {
			Model    string          `json:"model"`
			Image    *string         `json:"image"`
			Text     *string         `json:"text"`
			Vector   []float32       `json:"vector"`
			K        *int            `json:"k"`
			Metadata json.RawMessage `json:"metadata"`
			Exact    bool            `json:"exact"`
			EfSearch int             `json:"ef_search"`
		}
		if err := decodeJSON(body, &req, true); err != nil {
			return nil, err
		}
		given := 0
		for _, ok := range []bool{req.Image != nil, req.Text != nil, req.Vector != nil} {
			if ok {
				given++
			}
		}
		if given != 1 {
			return nil, badRequest(`give exactly one of "image" (base64), "text" and "vector"`)
		}
		if req.Image != nil {
			if q.image, err = decodeBase64Image(*req.Image); err != nil {
				return nil, err
			}
		}
		q.model, q.text, q.vector = req.Model, req.Text, req.Vector
		q.search = index.SearchOptions{Exact: req.Exact, EfSearch: req.EfSearch}
		if req.K != nil {
			q.k = *req.K
		}
		if string(bytes.TrimSpace(req.Metadata)) != "null" {
			q.metadata = req.Metadata
		}
	} else {
		u, err := parseUpload(ctx, s.opts.MaxBodySize)
		if err != nil {
			return nil, err
		}
		q.model = u.field("model", "")
		if v := u.field("k", ""); v != "" {
			if q.k, err = strconv.Atoi(v); err != nil {
				return nil, badRequest("k must be an integer")
			}
		}
		if m := u.field("metadata", ""); m != "" {
			q.metadata = json.RawMessage(m)
		}
		if v := u.field("exact", ""); v != "" {
			if q.search.Exact, err = strconv.ParseBool(v); err != nil {
				return nil, badRequest("exact must be true or false")
			}
		}
		if v := u.field("ef_search", ""); v != "" {
			if q.search.EfSearch, err = strconv.Atoi(v); err != nil {
				return nil, badRequest("ef_search must be an integer")
			}
		}
		t, hasText := u.fields["text"]
		_, hasImage := u.files["image"]
		switch {
		case hasText && hasImage:
			return nil, badRequest(`give exactly one of "image" and "text"`)
		case hasText && u.form:
			q.text = &t
		default:
			if q.image, err = u.image("image"); err != nil {
				return nil, err
			}
		}
	}
	if q.model == "" {
		q.model = defaultCLIPModel
	}
	if q.text != nil && *q.text == "" {
		return nil, badRequest(`"text" is empty`)
	}
	if q.text != nil {
		if err := checkText(*q.text); err != nil {
			return nil, err
		}
	}
	if q.vector != nil && len(q.vector) == 0 {
		return nil, badRequest(`"vector" is empty`)
	}
	return q, nil
}

// vector returns the query's vector, embedding its image or text.
func (s *Server) vector(ctx context.Context, q *clipQuery) ([]float32, error) {
	if q.vector != nil {
		return q.vector, nil
	}
	tw, err := s.clipTowers(q.model)
	if err != nil {
		return nil, err
	}
	in := clipInput{image: q.image, isImage: true}
	if q.text != nil {
		in = clipInput{text: *q.text}
	}
	vecs, _, err := s.embed(ctx, tw, []clipInput{in})
	if err != nil {
		return nil, err
	}
	return vecs[0], nil
}

// collectionError gives a missing collection a message that says how to
// make one.
func collectionError(name string, err error) error {
	if errors.Is(err, index.ErrNoCollection) {
		return newError(http.StatusNotFound, "not_found",
			fmt.Sprintf("no collection %q; PUT an item to create it", name))
	}
	return clipError(err)
}

func (s *Server) listCollections(ctx *fasthttp.RequestCtx, _ routeParams) {
	rctx := requestContext(ctx)
	list, err := s.opts.Index.List(rctx)
	if err != nil {
		writeError(ctx, clipError(err))
		return
	}
	if list == nil {
		list = []index.Info{}
	}
	writeJSON(ctx, http.StatusOK, map[string]any{"collections": list})
}

func (s *Server) getCollection(ctx *fasthttp.RequestCtx, p routeParams) {
	rctx := requestContext(ctx)
	info, err := s.opts.Index.Info(rctx, p.Var("c"))
	if err != nil {
		writeError(ctx, collectionError(p.Var("c"), err))
		return
	}
	writeJSON(ctx, http.StatusOK, info)
}

// createCollection makes an empty collection with chosen index parameters:
// {"dimension": 512, "index": "hnsw"|"flat", "storage": "float32"|"int8",
// "m", "ef_construction", "ef_search"}. 201 when created, 200 when it
// exists with the same settings, 409 when it exists with others.
func (s *Server) createCollection(ctx *fasthttp.RequestCtx, p routeParams) {
	name := p.Var("c")
	if !index.ValidName(name) {
		writeError(ctx, badRequest("bad collection name %q: use 1 to 64 of A-Z a-z 0-9 _ . -", name))
		return
	}
	body, err := requestBody(ctx, s.opts.MaxBodySize)
	if err != nil {
		writeError(ctx, err)
		return
	}
	var req struct {
		Dimension int `json:"dimension"`
		index.Params
	}
	if err := decodeJSON(body, &req, true); err != nil {
		writeError(ctx, err)
		return
	}
	if req.Dimension == 0 {
		writeError(ctx, badRequest(`"dimension" is required (512 for CLIP ViT-B/32)`))
		return
	}
	rctx := requestContext(ctx)
	info, created, err := s.opts.Index.Create(rctx, name, req.Dimension, req.Params)
	if err != nil {
		writeError(ctx, clipError(err))
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(ctx, code, info)
}

func (s *Server) deleteCollection(ctx *fasthttp.RequestCtx, p routeParams) {
	rctx := requestContext(ctx)
	if err := s.opts.Index.Drop(rctx, p.Var("c")); err != nil {
		writeError(ctx, collectionError(p.Var("c"), err))
		return
	}
	writeJSON(ctx, http.StatusOK, map[string]any{"name": p.Var("c"), "deleted": true})
}

// putItem indexes an item, creating the collection on first use with the
// item's dimension (512 for CLIP embeddings) and default parameters.
func (s *Server) putItem(ctx *fasthttp.RequestCtx, p routeParams) {
	name, id := p.Var("c"), p.Var("id")
	if !index.ValidName(name) {
		writeError(ctx, badRequest("bad collection name %q: use 1 to 64 of A-Z a-z 0-9 _ . -", name))
		return
	}
	q, err := s.readClipQuery(ctx)
	if err != nil {
		writeError(ctx, err)
		return
	}
	start := time.Now()
	vec, err := s.vector(requestContext(ctx), q)
	if err != nil {
		writeError(ctx, err)
		return
	}
	embedded := time.Since(start)
	rctx := requestContext(ctx)
	info, err := s.opts.Index.Upsert(rctx, name, index.Item{ID: id, Vector: vec, Metadata: q.metadata})
	if err != nil {
		writeError(ctx, clipError(err))
		return
	}
	ctx.Response.Header.Set("Server-Timing", fmt.Sprintf("embed;dur=%.2f, store;dur=%.2f", msf(embedded), msf(time.Since(start)-embedded)))
	writeJSON(ctx, http.StatusOK, map[string]any{"collection": name, "id": id, "dimension": info.Dimension, "count": info.Count})
}

func (s *Server) deleteItem(ctx *fasthttp.RequestCtx, p routeParams) {
	rctx := requestContext(ctx)
	info, err := s.opts.Index.DeleteItem(rctx, p.Var("c"), p.Var("id"))
	if err != nil {
		writeError(ctx, collectionError(p.Var("c"), err))
		return
	}
	writeJSON(ctx, http.StatusOK, map[string]any{"collection": p.Var("c"), "id": p.Var("id"), "deleted": true, "count": info.Count})
}

// searchCollection returns the k items nearest the query by cosine
// similarity, best first: through the collection's graph, or with
// "exact": true by comparing every item.
func (s *Server) searchCollection(ctx *fasthttp.RequestCtx, p routeParams) {
	name := p.Var("c")
	rctx := requestContext(ctx)
	// Look the collection up first: a search of a missing one should not
	// cost an embedding.
	if _, err := s.opts.Index.Info(rctx, name); err != nil {
		writeError(ctx, collectionError(name, err))
		return
	}
	q, err := s.readClipQuery(ctx)
	if err == nil && (q.k < 1 || q.k > index.MaxK) {
		err = badRequest("k must be between 1 and %d, not %d", index.MaxK, q.k)
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	start := time.Now()
	vec, err := s.vector(requestContext(ctx), q)
	if err != nil {
		writeError(ctx, err)
		return
	}
	embedded := time.Since(start)
	hits, err := s.opts.Index.Search(rctx, name, vec, q.k, q.search)
	if err != nil {
		writeError(ctx, collectionError(name, err))
		return
	}
	ctx.Response.Header.Set("Server-Timing", fmt.Sprintf("embed;dur=%.2f, search;dur=%.2f", msf(embedded), msf(time.Since(start)-embedded)))
	if hits == nil {
		hits = []index.Hit{}
	}
	writeJSON(ctx, http.StatusOK, map[string]any{"collection": name, "results": hits})
}
