package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/models/inpaint"
	"github.com/imgserve/imgserve/preprocess"
)

func init() {
	addFeature(
		Feature{Method: "POST", Pattern: "/v1/inpaint", Handle: (*Server).inpaintImage},
		// IOPaint's route, so its clients work unchanged.
		Feature{Method: "POST", Pattern: "/api/v1/inpaint", Access: AccessKeyOrHeader, Handle: (*Server).inpaintImage},
		Feature{Method: "POST", Pattern: "/v1/remove-watermark", Handle: (*Server).removeWatermark},
	)
}

// defaultInpaintModel is the model a request gets when it names none.
const defaultInpaintModel = "lama"

// inpaintRequest is a request of either route, its images still encoded.
type inpaintRequest struct {
	image, mask []byte
	boxes       []inpaint.Box // remove-watermark only; nil when absent
	model       string
	format      string
	// params are the inpaint.RequestParams the request set, as text.
	params map[string]string
}

// inpaintImage is POST /v1/inpaint and IOPaint's POST /api/v1/inpaint:
// an image and a mask, as multipart parts or base64 in a JSON body.
func (s *Server) inpaintImage(ctx *fasthttp.RequestCtx, _ routeParams) {
	req, err := parseInpaintRequest(ctx, s.opts.MaxBodySize, false)
	if err == nil && req.mask == nil {
		err = missingField("mask")
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.inpaint(ctx, req)
}

// removeWatermark is POST /v1/remove-watermark: an image and either a mask
// or boxes, a JSON list of [x, y, w, h] rectangles in pixels.
func (s *Server) removeWatermark(ctx *fasthttp.RequestCtx, _ routeParams) {
	req, err := parseInpaintRequest(ctx, s.opts.MaxBodySize, true)
	switch {
	case err != nil:
	case req.mask == nil && req.boxes == nil:
		err = newError(http.StatusBadRequest, "bad_request", `give either a "mask" image or "boxes", a JSON list of [x, y, w, h] rectangles`)
	case req.mask != nil && req.boxes != nil:
		err = newError(http.StatusBadRequest, "bad_request", `give either a "mask" or "boxes", not both`)
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	s.inpaint(ctx, req)
}

func missingField(name string) error {
	return newError(http.StatusBadRequest, "bad_request", "missing field "+strconv.Quote(name))
}

// parseInpaintRequest reads a multipart or urlencoded form, a JSON body as
// IOPaint sends it, or a raw image body (with the other fields in the query
// string). JSON keys other than the ones served here are ignored, since
// IOPaint's clients send their whole settings object.
func parseInpaintRequest(ctx *fasthttp.RequestCtx, maxBody int, withBoxes bool) (*inpaintRequest, error) {
	var (
		u     *upload
		boxes string
		err   error
	)
	req := &inpaintRequest{params: map[string]string{}}
	if isJSONBody(ctx) {
		body, err := requestBody(ctx, maxBody)
		if err != nil {
			return nil, err
		}
		u = &upload{fields: map[string]string{}}
		ctx.QueryArgs().VisitAll(func(k, v []byte) { u.fields[string(k)] = string(v) })
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, newError(http.StatusBadRequest, "bad_request", "malformed JSON body: "+err.Error())
		}
		if req.image, err = jsonImage(obj, "image"); err != nil {
			return nil, err
		}
		if req.mask, err = jsonImage(obj, "mask"); err != nil {
			return nil, err
		}
		if raw, ok := obj["boxes"]; ok && withBoxes && string(raw) != "null" {
			boxes = string(raw)
		}
		for _, k := range append([]string{"model", "format"}, inpaint.RequestParams...) {
			v, err := jsonScalar(obj, k)
			if err != nil {
				return nil, err
			}
			if v != "" {
				u.fields[k] = v
			}
		}
	} else {
		if u, err = parseUpload(ctx, maxBody); err != nil {
			return nil, err
		}
		if req.image, err = u.image("image"); err != nil {
			return nil, err
		}
		if req.image, err = formImage("image", req.image); err != nil {
			return nil, err
		}
		if data, ok := u.files["mask"]; ok {
			req.mask = data
		} else if v := u.fields["mask"]; u.form && v != "" {
			if req.mask, err = formImage("mask", []byte(v)); err != nil {
				return nil, err
			}
		}
		if withBoxes {
			boxes = u.field("boxes", "")
		}
	}
	if len(req.image) == 0 {
		return nil, missingField("image")
	}
	if boxes != "" {
		if req.boxes, err = parseBoxes(boxes); err != nil {
			return nil, err
		}
	}
	req.model = u.field("model", defaultInpaintModel)
	req.format = strings.ToLower(u.field("format", "png"))
	if req.format != "png" && req.format != "jpeg" && req.format != "jpg" {
		return nil, newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("format must be png or jpeg, not %q", req.format))
	}
	for _, k := range inpaint.RequestParams {
		if v := u.field(k, ""); v != "" {
			req.params[k] = v
		}
	}
	return req, nil
}

// jsonImage reads a base64 image (a data URL too) from a JSON body; nil
// when the key is absent, null or "".
func jsonImage(obj map[string]json.RawMessage, key string) ([]byte, error) {
	raw, ok := obj[key]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, newError(http.StatusBadRequest, "bad_request", key+" must be a base64 string or a data URL")
	}
	if s == "" {
		return nil, nil
	}
	return base64Field(key, s)
}

// jsonScalar reads a string, number or boolean as text; "" when absent or
// null.
func jsonScalar(obj map[string]json.RawMessage, key string) (string, error) {
	raw, ok := obj[key]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", newError(http.StatusBadRequest, "bad_request", "malformed JSON value for "+key)
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case json.Number:
		return v.String(), nil
	case bool:
		return strconv.FormatBool(v), nil
	}
	return "", newError(http.StatusBadRequest, "bad_request", key+" must be a string or a number")
}

// formImage takes a form value as image bytes, or as base64 or a data URL
// when it is text rather than an image, as a browser form may send it.
func formImage(field string, v []byte) ([]byte, error) {
	if preprocess.DetectFormat(v) != "" {
		return v, nil
	}
	s := strings.TrimSpace(string(v))
	if strings.HasPrefix(s, "data:") || isBase64Text(s) {
		return base64Field(field, s)
	}
	return v, nil // not an image: the decoder says so with the right status
}

func isBase64Text(s string) bool {
	if len(s) < 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '+' || c == '/' || c == '=' || c == '\n' || c == '\r') {
			return false
		}
	}
	return true
}

// base64Field decodes a base64 image or data URL, naming the field in the
// error when it is not the image. Line breaks and spaces go first: Python's
// base64.encodebytes wraps its lines.
func base64Field(field, s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	data, err := decodeBase64Image(s)
	if err != nil && field != "image" {
		ae := classify(err)
		return nil, newError(ae.status, ae.code, field+": "+ae.msg)
	}
	return data, err
}

// parseBoxes reads boxes: a JSON list of [x, y, w, h] rectangles.
func parseBoxes(s string) ([]inpaint.Box, error) {
	var list [][]float64
	if err := json.Unmarshal([]byte(s), &list); err != nil || slices.ContainsFunc(list, func(b []float64) bool { return len(b) != 4 }) {
		return nil, newError(http.StatusBadRequest, "bad_request",
			`boxes must be a JSON list of [x, y, w, h] rectangles in pixels, such as [[10, 20, 200, 50]]`)
	}
	if len(list) == 0 {
		return nil, newError(http.StatusBadRequest, "bad_request", "boxes is empty: give at least one [x, y, w, h] rectangle")
	}
	if len(list) > inpaint.MaxBoxes {
		return nil, newError(http.StatusBadRequest, "bad_request", fmt.Sprintf("%d boxes; the limit is %d", len(list), inpaint.MaxBoxes))
	}
	boxes := make([]inpaint.Box, len(list))
	for i, b := range list {
		boxes[i] = inpaint.Box(b)
	}
	return boxes, nil
}

// inpaintError gives the package's input errors their status.
func inpaintError(err error) error {
	if ie, ok := errors.AsType[*inpaint.InputError](err); ok {
		return newError(http.StatusBadRequest, "bad_request", ie.Error())
	}
	return err
}

// maskError names the mask in an error about decoding it, which otherwise
// reads as if the image were at fault.
func maskError(err error) error {
	ae := classify(err)
	return newError(ae.status, ae.code, "mask: "+ae.msg)
}

func (s *Server) inpaint(ctx *fasthttp.RequestCtx, req *inpaintRequest) {
	rctx := requestContext(ctx)
	runner, opts, err := inpaint.Lookup(rctx, s.opts.Registry, req.model)
	if err == nil {
		for k, v := range req.params {
			if _, err = opts.Set(k, v); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = opts.Validate()
	}
	if err == nil {
		err = s.checkLoad(rctx, req.model)
	}
	if err != nil {
		writeError(ctx, inpaintError(err))
		return
	}

	start := time.Now()
	img, info, err := s.decodeImage(rctx, req.image, inpaintImageCopies)
	if err != nil {
		writeError(ctx, err)
		return
	}
	var mask *image.Gray
	if req.mask != nil {
		// The mask must be the image's size: its header says so before
		// it costs a decode.
		mi, err := preprocess.DecodeConfig(req.mask, s.opts.ImageLimits)
		if err == nil && (mi.Width != info.Width || mi.Height != info.Height) {
			err = newError(http.StatusBadRequest, "bad_request", fmt.Sprintf(
				"the mask is %dx%d but the image is %dx%d; they must be the same size", mi.Width, mi.Height, info.Width, info.Height))
		}
		var m *image.NRGBA
		if err == nil {
			m, _, err = s.decodeImage(rctx, req.mask, inpaintMaskCopies)
		}
		if err != nil {
			writeError(ctx, maskError(err))
			return
		}
		mask = inpaint.MaskFromImage(m)
	} else if mask, err = inpaint.MaskFromBoxes(img.Rect.Dx(), img.Rect.Dy(), req.boxes); err != nil {
		writeError(ctx, inpaintError(err))
		return
	}
	decoded := time.Since(start)

	t, err := runner.Inpaint(rctx, img, mask, opts)
	if err == nil {
		err = rctx.Err() // the deadline covers the encoding too
	}
	if err != nil {
		writeError(ctx, inpaintError(err))
		return
	}

	start = time.Now()
	var buf bytes.Buffer
	contentType := "image/png"
	if req.format == "png" {
		err = preprocess.EncodePNG(&buf, img)
	} else {
		contentType = "image/jpeg"
		err = preprocess.EncodeJPEG(&buf, img, preprocess.DefaultJPEGQuality)
	}
	if err != nil {
		writeError(ctx, err)
		return
	}
	ctx.Response.Header.Set("Server-Timing", fmt.Sprintf(
		"decode;dur=%.2f, mask;dur=%.2f, preprocess;dur=%.2f, inference;dur=%.2f, postprocess;dur=%.2f, encode;dur=%.2f",
		msf(decoded), msf(t.Mask), msf(t.Pack), msf(t.Inference), msf(t.Unpack+t.Paste), msf(time.Since(start))))
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType(contentType)
	ctx.SetBody(buf.Bytes())
}
