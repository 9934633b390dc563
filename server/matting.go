package server

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/preprocess"
)

func init() {
	addFeature(
		Feature{Method: "POST", Pattern: "/v1/remove-background", Handle: (*Server).removeBackground},
		// rembg's server, so clients written for `rembg s` work unchanged.
		Feature{Method: "POST", Pattern: "/api/remove", Handle: (*Server).rembgRemove},
		Feature{Method: "GET", Pattern: "/api/remove", Handle: (*Server).rembgRemoveURL},
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

// rembgRemove is rembg's POST /api/remove: multipart "file" with form fields
// model, om (only mask), ppm (post-process mask) and bgc ("r,g,b,a").
func (s *Server) rembgRemove(ctx *fasthttp.RequestCtx, _ routeParams) {
	u, err := parseUpload(ctx, s.opts.MaxBodySize)
	if err != nil {
		writeError(ctx, err)
		return
	}
	req := cutoutRequest{model: u.field("model", ""), format: "png"}
	var onlyMask bool
	if onlyMask, err = u.flag("om"); err == nil {
		if req.postProcess, err = u.flag("ppm"); err == nil {
			req.bg, err = parseBackground(u.field("bgc", ""))
		}
	}
	if a, _ := u.flag("a"); a && err == nil {
		err = newError(http.StatusBadRequest, "bad_request", "alpha matting (a=true) is not supported")
	}
	if err == nil {
		req.image, err = u.image("file")
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	if onlyMask {
		req.format, req.bg = "mask", nil
	}
	s.cutout(ctx, req)
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
	if err != nil {
		writeError(ctx, err)
		return
	}
	start := time.Now()
	img, _, err := s.decodeImage(req.image)
	if err != nil {
		writeError(ctx, err)
		return
	}
	decoded := time.Since(start)
	rctx, cancel := s.requestContext(0)
	defer cancel()
	mask, t, err := pipe.Mask(rctx, img)
	if err != nil {
		writeError(ctx, err)
		return
	}
	start = time.Now()
	if req.postProcess {
		mask = preprocess.PostProcessMask(mask)
	}
	var out image.Image = mask
	// The plain cutout is composited while it is encoded (no cutout image);
	// the other outputs need it whole.
	fused := req.format == "png" && req.bg == nil && !req.crop
	if req.format != "mask" && !fused {
		cut, err := preprocess.Cutout(img, mask)
		if err != nil {
			writeError(ctx, err)
			return
		}
		if req.bg != nil {
			cut = preprocess.ApplyBackgroundColor(cut, *req.bg)
		}
		if req.crop {
			cut = preprocess.CropToSubject(cut)
		}
		out = cut
	}
	composited := time.Since(start)
	start = time.Now()
	var buf bytes.Buffer
	contentType := "image/png"
	if req.format == "jpeg" {
		contentType = "image/jpeg"
		err = preprocess.EncodeJPEG(&buf, out, preprocess.DefaultJPEGQuality)
	} else if fused {
		err = preprocess.EncodeCutoutPNG(&buf, img, mask)
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
		"decode;dur=%.2f, preprocess;dur=%.2f, inference;dur=%.2f, mask;dur=%.2f, composite;dur=%.2f, encode;dur=%.2f",
		msf(decoded), msf(t.ResizePack), msf(t.Inference), msf(t.MaskResize), msf(composited), msf(time.Since(start))))
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType(contentType)
	ctx.SetBody(buf.Bytes())
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
