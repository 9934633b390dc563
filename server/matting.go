package server

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"image"
	"image/color"
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/matting"
	"github.com/imgserve/imgserve/preprocess"
	"github.com/imgserve/imgserve/preprocess/matte"
)

func init() {
	addFeature(
		Feature{Method: "POST", Pattern: "/v1/remove-background", Handle: (*Server).removeBackground},
		// rembg's server, so clients written for `rembg s` work unchanged.
		Feature{Method: "POST", Pattern: "/api/remove", Access: AccessKeyOrHeader, Handle: (*Server).rembgRemove},
		Feature{Method: "GET", Pattern: "/api/remove", Access: AccessKeyOrHeader, Handle: (*Server).rembgRemoveURL},
		Feature{Method: "GET", Pattern: "/api", Handle: (*Server).rembgAPI},
	)
}

// cutoutRequest is a background removal, from either API.
type cutoutRequest struct {
	image       []byte
	model       string
	format      string // png, jpeg or mask
	bg          *color.NRGBA
	crop        bool
	postProcess bool
	alpha       *matte.Options // rembg's alpha matting, when asked for
	extras      matting.Extras
}

func (s *Server) removeBackground(ctx *fasthttp.RequestCtx, _ routeParams) {
	u, err := parseUpload(ctx, s.opts.MaxBodySize)
	if err != nil {
		writeError(ctx, err)
		return
	}
	req := cutoutRequest{model: u.field("model", ""), format: u.field("format", "png")}
	if req.format != "png" && req.format != "jpeg" && req.format != "mask" {
		writeError(ctx, newError(http.StatusBadRequest, "bad_request", "format must be png, jpeg or mask, not "+fmt.Sprintf("%q", req.format)))
		return
	}
	if req.bg, err = parseBackground(u.field("bg_color", "")); err == nil {
		if req.crop, err = u.flag("crop"); err == nil {
			req.postProcess, err = u.flag("post_process")
		}
	}
	if err == nil {
		req.alpha, err = parseAlphaMatting(u, "alpha_matting", "alpha_matting_foreground_threshold",
			"alpha_matting_background_threshold", "alpha_matting_erode_size")
	}
	if err == nil {
		req.extras, err = parseTaskExtras(u)
	}
	if err == nil && req.format == "jpeg" && req.bg == nil {
		err = newError(http.StatusBadRequest, "bad_request", "format=jpeg has no transparency: give bg_color too")
	}
	if err == nil {
		req.image, err = u.image("image")
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.cutout(ctx, req)
}

// parseTaskExtras reads the task API's model parameters: rembg's extras
// JSON, and the same keys as fields of their own, which win: sam_prompt
// (a JSON array) and cloth_category.
func parseTaskExtras(u *upload) (matting.Extras, error) {
	ex, err := matting.ParseExtras([]byte(u.field("extras", "")))
	if err != nil {
		return ex, err
	}
	if p := u.field("sam_prompt", ""); p != "" {
		if ex.SAMPrompt, err = matting.ParseSAMPrompt([]byte(p)); err != nil {
			return ex, err
		}
	}
	ex.ClothCategory = u.field("cloth_category", ex.ClothCategory)
	return ex, nil
}

// rembgRemove is rembg's POST /api/remove: multipart "file" with form (or
// query) fields model, a, af, ab, ae (alpha matting), om (only mask), ppm
// (post-process mask), bgc ("r,g,b,a") and extras (JSON for the model).
func (s *Server) rembgRemove(ctx *fasthttp.RequestCtx, _ routeParams) {
	u, err := parseUpload(ctx, s.opts.MaxBodySize)
	if err != nil {
		writeError(ctx, err)
		return
	}
	req := cutoutRequest{model: u.field("model", s.rembgDefaultModel()), format: "png"}
	var onlyMask bool
	if onlyMask, err = u.flag("om"); err == nil {
		if req.postProcess, err = u.flag("ppm"); err == nil {
			req.bg, err = parseBackground(u.field("bgc", ""))
		}
	}
	if err == nil {
		req.alpha, err = parseAlphaMatting(u, "a", "af", "ab", "ae")
	}
	if err == nil {
		req.extras, err = matting.ParseExtras([]byte(u.field("extras", "")))
	}
	if err == nil {
		req.image, err = u.image("file")
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	if onlyMask {
		req.format, req.bg, req.alpha = "mask", nil, nil
	}
	s.cutout(ctx, req)
}

// rembgDefaultModel is rembg's default, u2net, when it is ready, and
// otherwise the server's default ("").
func (s *Server) rembgDefaultModel() string {
	if m, ok := s.opts.Registry.Get("u2net"); ok && m.State().Status == models.StatusReady && matting.IsMattingTask(m.Config.Task) {
		return "u2net"
	}
	return ""
}

// parseAlphaMatting reads the switch and rembg's three numbers, with
// rembg's defaults; nil when alpha matting is off.
func parseAlphaMatting(u *upload, on, fg, bg, erode string) (*matte.Options, error) {
	enabled, err := u.flag(on)
	if err != nil || !enabled {
		return nil, err
	}
	o := matte.Defaults
	for _, f := range []struct {
		name string
		v    *int
	}{{fg, &o.ForegroundThreshold}, {bg, &o.BackgroundThreshold}, {erode, &o.ErodeSize}} {
		s := u.field(f.name, "")
		if s == "" {
			continue
		}
		if *f.v, err = strconv.Atoi(s); err != nil {
			return nil, newError(http.StatusBadRequest, "bad_request", f.name+" must be an integer")
		}
	}
	if err := o.Validate(matting.DefaultAlphaLimits.MaxErode); err != nil {
		return nil, newError(http.StatusBadRequest, "bad_request", err.Error())
	}
	return &o, nil
}

// rembgRemoveURL refuses rembg's GET /api/remove?url=: fetching a URL would
// be an outbound connection, which this server never makes.
func (s *Server) rembgRemoveURL(ctx *fasthttp.RequestCtx, _ routeParams) {
	writeError(ctx, newError(http.StatusBadRequest, "bad_request",
		"fetching images by URL is disabled: imgserve makes no outbound connections; POST the image instead"))
}

func parseBackground(s string) (*color.NRGBA, error) {
	if s == "" {
		return nil, nil
	}
	c, err := preprocess.ParseColor(s)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func (s *Server) cutout(ctx *fasthttp.RequestCtx, req cutoutRequest) {
	pipe, err := s.matting.Get(req.model)
	if err == nil {
		err = s.checkLoad(requestContext(ctx), pipe.Model().Config.Name)
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	rctx := requestContext(ctx)
	start := time.Now()
	img, _, err := s.decodeImage(rctx, req.image, mattingCopies)
	if err != nil {
		writeError(ctx, err)
		return
	}
	decoded := time.Since(start)
	masks, t, err := pipe.Masks(rctx, img, req.extras)
	if err != nil {
		writeError(ctx, err)
		return
	}
	if err := rctx.Err(); err != nil {
		writeError(ctx, err)
		return
	}
	start = time.Now()
	var mattingTime time.Duration
	// The plain cutout of one mask is composited while it is encoded (no
	// cutout image); the other outputs need it whole.
	fused := req.format == "png" && req.bg == nil && !req.crop && req.alpha == nil &&
		!req.extras.PutAlpha && len(masks) == 1
	parts := make([]image.Image, len(masks))
	for i, mask := range masks {
		if req.postProcess {
			mask = preprocess.PostProcessMask(mask)
		}
		if req.format == "mask" || fused {
			parts[i] = mask
			continue
		}
		var cut *image.NRGBA
		if req.alpha != nil {
			ms := time.Now()
			var st matting.AlphaStats
			cut, st, err = s.alpha.Cutout(rctx, img, mask, *req.alpha)
			mattingTime += time.Since(ms)
			switch {
			case errors.Is(err, matte.ErrFallback):
				// rembg returns the plain cutout when pymatting gives up.
				ctx.Response.Header.Set("X-Alpha-Matting", "fallback: "+err.Error())
				cut = nil
			case err != nil:
				writeError(ctx, err)
				return
			default:
				ctx.Response.Header.Set("X-Alpha-Matting", fmt.Sprintf("applied: %d unknown pixels, %d iterations", st.Unknown, st.Iterations))
			}
		}
		if cut == nil {
			plain := preprocess.Cutout
			if req.extras.PutAlpha {
				plain = preprocess.PutAlpha
			}
			if cut, err = plain(img, mask); err != nil {
				writeError(ctx, err)
				return
			}
		}
		parts[i] = cut
	}
	out := preprocess.StackVertically(parts)
	if req.format != "mask" && !fused {
		cut := out.(*image.NRGBA)
		if req.bg != nil {
			cut = preprocess.ApplyBackgroundColor(cut, *req.bg)
		}
		if req.crop {
			cut = preprocess.CropToSubject(cut)
		}
		out = cut
	}
	composited := time.Since(start) - mattingTime
	if err := rctx.Err(); err != nil { // the deadline covers the encoding too
		writeError(ctx, err)
		return
	}
	start = time.Now()
	var buf bytes.Buffer
	contentType := "image/png"
	if req.format == "jpeg" {
		contentType = "image/jpeg"
		err = preprocess.EncodeJPEG(&buf, out, preprocess.DefaultJPEGQuality)
	} else if fused {
		err = preprocess.EncodeCutoutPNG(&buf, img, parts[0].(*image.Gray))
	} else {
		err = preprocess.EncodePNG(&buf, out)
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	// Stage timings, as Server-Timing, so clients and benchmarks see where
	// the time goes without reading server logs.
	ctx.Response.Header.Set("Server-Timing", fmt.Sprintf(
		"decode;dur=%.2f, preprocess;dur=%.2f, inference;dur=%.2f, mask;dur=%.2f, matting;dur=%.2f, composite;dur=%.2f, encode;dur=%.2f",
		msf(decoded), msf(t.ResizePack), msf(t.Inference), msf(t.MaskResize), msf(mattingTime), msf(composited), msf(time.Since(start))))
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType(contentType)
	ctx.SetBody(buf.Bytes())
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// rembgAPI answers rembg's GET /api, where rembg serves its API
// documentation: here a JSON description of the same API, with the models
// this server has and their state.
func (s *Server) rembgAPI(ctx *fasthttp.RequestCtx, _ routeParams) {
	type model struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Reason string `json:"reason,omitempty"`
	}
	var list []model
	for _, name := range s.matting.Names() {
		m, _ := s.opts.Registry.Get(name)
		st := m.State()
		list = append(list, model{Name: name, Status: string(st.Status), Reason: st.Reason})
	}
	l := s.alpha.Limits()
	writeJSON(ctx, http.StatusOK, map[string]any{
		"title":         "imgserve: rembg's HTTP API",
		"default_model": cmp.Or(s.rembgDefaultModel(), s.matting.Default()),
		"models":        list,
		"refused_models": map[string]string{
			"withoutbg": "a client of the withoutBG cloud API; imgserve makes no outbound connections",
		},
		"endpoints": map[string]string{
			"POST /api/remove": "multipart field file (the image), other parameters as form fields or in the query string; returns a PNG",
			"GET /api/remove":  "refused: fetching ?url= would be an outbound connection",
			"GET /api":         "this document",
		},
		"parameters": map[string]string{
			"model":  "a model above (default: default_model, rembg's u2net when it is ready)",
			"a":      "alpha matting, true or false (default false)",
			"af":     "alpha matting foreground threshold, 0-255 (default 240)",
			"ab":     "alpha matting background threshold, 0-255 (default 10)",
			"ae":     fmt.Sprintf("alpha matting erode size, 0-%d (default 10)", l.MaxErode),
			"om":     "only the mask, true or false",
			"ppm":    "post-process the mask, true or false",
			"bgc":    "background colour r,g,b,a",
			"extras": `JSON for the model: sam_prompt ([{"type":"point","data":[x,y],"label":1}, {"type":"rectangle","data":[x0,y0,x1,y1]}]) for sam, cc or cloth_category (upper, lower, full) for u2net_cloth_seg, putalpha (true: keep the colours, the mask as alpha)`,
		},
		"alpha_matting_memory_mib": l.MaxBytes >> 20,
	})
}
