package server

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"weak"

	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/models/diffusion"
	"github.com/imgserve/imgserve/preprocess"
	"github.com/imgserve/imgserve/server/admission"
)

// OpenAI's Images API, served by the diffusion pipelines. Every image
// passes the pipeline's NSFW guard before it is encoded; nothing here can
// return an image the guard has not passed.
func init() {
	addFeature(
		Feature{Method: "POST", Pattern: "/v1/images/generations", Handle: (*Server).imageGenerations},
		Feature{Method: "POST", Pattern: "/v1/images/edits", Handle: (*Server).imageEdits},
	)
}

// diffusionRegistries holds each server's pipelines, built on first use.
var diffusionRegistries sync.Map // weak.Pointer[Server] -> *diffusion.Registry

func (s *Server) diffusion() *diffusion.Registry {
	return perServer(&diffusionRegistries, s, func() *diffusion.Registry { return diffusion.NewRegistry(s.opts.Registry) })
}

// perServer returns s's value in m, made on first use. The key is weak and
// the entry goes with its server, so test servers do not pile up.
func perServer[T any](m *sync.Map, s *Server, make func() T) T {
	key := weak.Make(s)
	if v, ok := m.Load(key); ok {
		return v.(T)
	}
	v, loaded := m.LoadOrStore(key, make())
	if !loaded {
		runtime.AddCleanup(s, func(k weak.Pointer[Server]) { m.Delete(k) }, key)
	}
	return v.(T)
}

// imageRequest is a generations or edits request after parsing.
type imageRequest struct {
	edit    bool
	model   string
	gen     diffusion.Request
	image   []byte // edits: the upload, still encoded
	mask    []byte
	format  string // png or jpeg
	quality int    // jpeg quality
	stream  bool
}

// eventPrefix is OpenAI's streaming event namespace for the route.
func (r *imageRequest) eventPrefix() string {
	if r.edit {
		return "image_edit"
	}
	return "image_generation"
}

// maxSeed: seeds are 32-bit, as in most Stable Diffusion tools, and exact
// in every JSON parser.
const maxSeed = math.MaxUint32

// set applies one request parameter, given as text (a form field, or a
// JSON value made text by jsonScalar).
func (r *imageRequest) set(key, v string) error {
	intIn := func(lo, hi int) (int, error) {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < lo || n > hi {
			return 0, badRequest("%s must be an integer from %d to %d", key, lo, hi)
		}
		return n, nil
	}
	var err error
	switch key {
	case "model":
		r.model = v
	case "prompt":
		r.gen.Prompt = v
	case "negative_prompt":
		r.gen.NegativePrompt = v
	case "n":
		r.gen.N, err = intIn(1, 1000)
	case "size":
		if v == "" || v == "auto" {
			return nil
		}
		if r.gen.Width, r.gen.Height, err = diffusion.ParseSize(v); err != nil {
			return badRequest("%v", err)
		}
	case "response_format":
		switch v {
		case "", "b64_json":
		case "url":
			return badRequest(`response_format "url" is not served: generated images are never stored, so there is no URL to fetch them from; use "b64_json"`)
		default:
			return badRequest(`response_format must be "b64_json"`)
		}
	case "output_format":
		switch v {
		case "", "png":
			r.format = "png"
		case "jpeg", "jpg":
			r.format = "jpeg"
		default:
			return badRequest("output_format must be png or jpeg (webp is not served)")
		}
	case "output_compression":
		r.quality, err = intIn(0, 100)
	case "seed":
		var n int
		if n, err = intIn(0, maxSeed); err == nil {
			seed := uint32(n)
			r.gen.Seed = &seed
		}
	case "steps", "num_inference_steps":
		r.gen.Steps, err = intIn(1, 1000)
	case "guidance_scale":
		g, perr := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if perr != nil || math.IsNaN(g) || g < 0 || g > 50 {
			return badRequest("guidance_scale must be a number from 0 to 50")
		}
		r.gen.Guidance = &g
	case "strength":
		if !r.edit {
			return badRequest("strength applies to /v1/images/edits only")
		}
		f, perr := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if perr != nil || math.IsNaN(f) || f <= 0 || f > 1 {
			return badRequest("strength must be a number above 0 and at most 1")
		}
		r.gen.Strength = f
	case "stream":
		switch strings.ToLower(v) {
		case "true", "1":
			r.stream = true
		case "false", "0", "":
		default:
			return badRequest("stream must be true or false")
		}
	case "background":
		if v == "transparent" {
			return badRequest(`background "transparent" is not served: images are opaque`)
		}
	case "partial_images":
		if n, perr := strconv.Atoi(v); perr != nil || n != 0 {
			return badRequest("partial_images is not served: an image leaves the server only after the NSFW check, so unfinished ones never do")
		}
	case "quality", "style", "user", "moderation", "input_fidelity":
		// OpenAI's knobs with no meaning here. moderation "low" does not
		// relax the NSFW check: no request can.
	default:
		return badRequest("unknown parameter %q", key)
	}
	return err
}

// imageGenerations is POST /v1/images/generations: OpenAI's JSON body.
func (s *Server) imageGenerations(ctx *fasthttp.RequestCtx, _ routeParams) {
	s.images(ctx, s.parseGeneration)
}

// imageEdits is POST /v1/images/edits: OpenAI's multipart form.
func (s *Server) imageEdits(ctx *fasthttp.RequestCtx, _ routeParams) {
	s.images(ctx, s.parseEdit)
}

func (s *Server) images(ctx *fasthttp.RequestCtx, parse func(*fasthttp.RequestCtx) (*imageRequest, error)) {
	req, err := parse(ctx)
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.generateImages(ctx, req)
}

func (s *Server) parseGeneration(ctx *fasthttp.RequestCtx) (*imageRequest, error) {
	req := &imageRequest{format: "png"}
	body, err := requestBody(ctx, s.opts.MaxBodySize)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := decodeJSON(body, &obj, false); err != nil {
		return nil, err
	}
	for k := range obj {
		v, err := jsonScalar(obj, k)
		if err == nil {
			err = req.set(k, v)
		}
		if err != nil {
			return nil, err
		}
	}
	return req, nil
}

// parseEdit reads the image (field image, or image[] as OpenAI's SDKs
// send a list), an optional mask and the parameters.
func (s *Server) parseEdit(ctx *fasthttp.RequestCtx) (*imageRequest, error) {
	req := &imageRequest{edit: true, format: "png"}
	u, err := parseUpload(ctx, s.opts.MaxBodySize)
	if err != nil {
		return nil, err
	}
	if !u.form {
		return nil, newError(http.StatusUnsupportedMediaType, "unsupported_media_type", "send multipart/form-data with the fields image, prompt and optionally mask")
	}
	for k, v := range u.fields {
		switch k {
		case "image", "image[]", "mask":
			continue // read below, as bytes
		}
		if err := req.set(k, v); err != nil {
			return nil, err
		}
	}
	for _, k := range []string{"image", "image[]"} {
		if req.image == nil {
			if req.image, err = formFile(u, k); err != nil {
				return nil, err
			}
		}
	}
	if req.image == nil {
		return nil, missingField("image")
	}
	if req.mask, err = formFile(u, "mask"); err != nil {
		return nil, err
	}
	return req, nil
}

// formFile is a form's file part, or a field holding the image (its bytes,
// base64 or a data URL); nil when absent.
func formFile(u *upload, field string) ([]byte, error) {
	if data, ok := u.files[field]; ok {
		return data, nil
	}
	if v := u.fields[field]; v != "" {
		return formImage(field, []byte(v))
	}
	return nil, nil
}

// imagesError gives the diffusion package's errors their status.
func imagesError(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, diffusion.ErrBadParams):
		return newError(http.StatusBadRequest, "bad_request", strings.TrimPrefix(msg, diffusion.ErrBadParams.Error()+": "))
	case errors.Is(err, diffusion.ErrPromptBlocked), errors.Is(err, diffusion.ErrUnsafeInput):
		return newError(http.StatusBadRequest, "content_policy_violation", msg)
	case errors.Is(err, diffusion.ErrNoSafetyCheck):
		return newError(http.StatusServiceUnavailable, "no_safety_check", msg)
	case errors.Is(err, diffusion.ErrConfig):
		return newError(http.StatusInternalServerError, "misconfigured", msg)
	}
	return err
}

// generateImages runs a parsed request: decodes its uploads, then answers
// with JSON, or with Server-Sent Events when it asked to stream.
func (s *Server) generateImages(ctx *fasthttp.RequestCtx, req *imageRequest) {
	reg := s.diffusion()
	name := req.model
	if name == "" {
		name = reg.Default()
	}
	if name == "" {
		writeError(ctx, newError(http.StatusNotFound, "not_found", "no image generation model is configured"))
		return
	}
	pipe, err := reg.Get(name)
	if err != nil {
		writeError(ctx, imagesError(err))
		return
	}
	rctx := requestContext(ctx)
	// A UNet whose queue would make this request wait past the shedding
	// budget refuses it before its uploads are decoded.
	if err := s.checkLoad(rctx, name); err != nil {
		writeError(ctx, err)
		return
	}
	start := time.Now()
	if req.image != nil {
		img, _, err := s.decodeImage(rctx, req.image, resizeCopies)
		if err != nil {
			writeError(ctx, err)
			return
		}
		req.gen.Image = img
		if req.mask != nil {
			m, _, err := s.decodeImage(rctx, req.mask, resizeCopies)
			if err != nil {
				writeError(ctx, maskError(err))
				return
			}
			req.gen.Mask = diffusion.MaskFromImage(m)
		}
	}
	decoded := time.Since(start)
	// Refuse what the pipeline would refuse before any compute, and
	// reserve the memory of the images it will make, so a stream starts
	// only for a request that can run.
	memory, err := pipe.Check(&req.gen)
	if err == nil {
		err = admission.Reserve(rctx, memory)
	}
	if err != nil {
		writeError(ctx, imagesError(err))
		return
	}
	if req.stream {
		s.streamImages(ctx, pipe, req)
		return
	}
	res, err := pipe.Generate(rctx, &req.gen, randomSeed)
	if err != nil {
		writeError(ctx, imagesError(err))
		return
	}
	start = time.Now()
	body, err := s.imagesResponse(pipe.Name(), req, res)
	if err != nil {
		writeError(ctx, err)
		return
	}
	t := res.Timing
	ctx.Response.Header.Set("Server-Timing", fmt.Sprintf(
		"decode;dur=%.2f, text;dur=%.2f, vae_encode;dur=%.2f, denoise;dur=%.2f, vae_decode;dur=%.2f, nsfw_check;dur=%.2f, encode;dur=%.2f",
		msf(decoded), msf(t.Text), msf(t.Encode), msf(t.Denoise), msf(t.Decode), msf(t.Check), msf(time.Since(start))))
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

func randomSeed() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:])
}

type imageDatum struct {
	B64JSON string `json:"b64_json"`
	Index   int    `json:"index"`
	Seed    uint32 `json:"seed"`
}

type withheldImage struct {
	Index   int    `json:"index"`
	Seed    uint32 `json:"seed"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

type imagesBody struct {
	Created      int64           `json:"created"`
	Data         []imageDatum    `json:"data"`
	Withheld     []withheldImage `json:"withheld,omitempty"`
	Model        string          `json:"model"`
	Size         string          `json:"size"`
	OutputFormat string          `json:"output_format"`
	Steps        int             `json:"steps"`
}

const (
	withheldCode    = "content_filtered"
	withheldMessage = "the image was withheld: the NSFW check flagged it"
)

// imagesResponse is OpenAI's ImagesResponse, with each image's index and
// seed, and the images the NSFW check withheld. When it withheld every
// image the request fails with 400 content_filtered, so a client reading
// data[0] gets an error instead of nothing.
func (s *Server) imagesResponse(model string, req *imageRequest, res *diffusion.Result) ([]byte, error) {
	b := imagesBody{Created: time.Now().Unix(), Data: []imageDatum{}, Model: model, OutputFormat: req.format, Steps: res.Steps}
	for _, o := range res.Images {
		if o.Withheld {
			b.Withheld = append(b.Withheld, withheldImage{Index: o.Index, Seed: o.Seed, Code: withheldCode, Message: withheldMessage})
			continue
		}
		enc, err := encodeImage(o.Image, req.format, req.quality)
		if err != nil {
			return nil, err
		}
		b.Data = append(b.Data, imageDatum{B64JSON: base64.StdEncoding.EncodeToString(enc), Index: o.Index, Seed: o.Seed})
		b.Size = fmt.Sprintf("%dx%d", o.Image.Rect.Dx(), o.Image.Rect.Dy())
	}
	if len(b.Data) == 0 {
		return nil, newError(http.StatusBadRequest, withheldCode,
			fmt.Sprintf("all %d generated images were withheld: the NSFW check flagged them", len(res.Images)))
	}
	return json.Marshal(b)
}

// encodeImage writes an image for the client. The encoders write pixels
// only: no metadata reaches an output.
func encodeImage(img *image.NRGBA, format string, quality int) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	if format == "jpeg" {
		err = preprocess.EncodeJPEG(&buf, img, quality)
	} else {
		err = preprocess.EncodePNG(&buf, img)
	}
	return buf.Bytes(), err
}

// streamImages answers with Server-Sent Events in the shape of OpenAI's
// image streams: progress after every denoising step (no pixels: an
// unfinished image has not passed the NSFW check), then one completed or
// withheld event per image, or an error event, then [DONE].
func (s *Server) streamImages(ctx *fasthttp.RequestCtx, pipe *diffusion.Pipeline, req *imageRequest) {
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	// The stream outlives the handler; give its writes the request's
	// deadline (and a little more to report it) instead of the server's
	// write timeout.
	ctx.SetWriteDeadline(time.Now().Add(s.opts.RequestTimeout + 10*time.Second))
	prefix := req.eventPrefix()
	model := pipe.Name()
	rctx, cancel, done := streamRequest(ctx)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer done()
		send := func(event string, v any) {
			data, _ := json.Marshal(v)
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
			if err := w.Flush(); err != nil {
				cancel() // the client has gone: stop generating
			}
		}
		req.gen.Progress = func(step, steps int) {
			send(prefix+".progress", map[string]any{"type": prefix + ".progress", "step": step, "steps": steps, "created_at": time.Now().Unix()})
		}
		res, err := pipe.Generate(rctx, &req.gen, randomSeed)
		if err != nil {
			ae := classify(imagesError(err))
			send("error", map[string]any{"type": "error", "error": map[string]string{"code": ae.code, "message": ae.msg}})
			fmt.Fprint(w, "data: [DONE]\n\n")
			w.Flush()
			return
		}
		for _, o := range res.Images {
			if o.Withheld {
				send(prefix+".withheld", map[string]any{"type": prefix + ".withheld", "index": o.Index, "seed": o.Seed,
					"code": withheldCode, "message": withheldMessage})
				continue
			}
			enc, err := encodeImage(o.Image, req.format, req.quality)
			if err != nil {
				send("error", map[string]any{"type": "error", "error": map[string]string{"code": "internal", "message": err.Error()}})
				continue
			}
			send(prefix+".completed", map[string]any{"type": prefix + ".completed", "index": o.Index, "seed": o.Seed,
				"b64_json": base64.StdEncoding.EncodeToString(enc), "created_at": time.Now().Unix(), "model": model,
				"size": fmt.Sprintf("%dx%d", o.Image.Rect.Dx(), o.Image.Rect.Dy()), "output_format": req.format})
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
		w.Flush()
	})
}
