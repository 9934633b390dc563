package server

import (
	"bytes"
	"context"
	"errors"
	"image"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/preprocess"
	"github.com/imgserve/imgserve/server/admission"
)

// upload is a task-API request parsed in memory: an image given as the raw
// body or as multipart parts, and parameters from the query string and form
// fields. It never touches disk: fasthttp's own multipart parser spills large
// files to temporary files, which would break the privacy promise.
type upload struct {
	fields map[string]string
	files  map[string][]byte
	raw    []byte // the body, when it is not a form
	rawCT  string // its media type
	form   bool
}

// maxFieldBytes bounds a non-file form field.
const maxFieldBytes = 1 << 20

// parseUpload reads the body (raw image, multipart/form-data or
// urlencoded) and the query string. Form fields win over query arguments.
func parseUpload(ctx *fasthttp.RequestCtx, maxBody int) (*upload, error) {
	body, err := requestBody(ctx, maxBody)
	if err != nil {
		return nil, err
	}
	u := &upload{fields: map[string]string{}, files: map[string][]byte{}}
	ctx.QueryArgs().VisitAll(func(k, v []byte) { u.fields[string(k)] = string(v) })
	mediaType, params, _ := mime.ParseMediaType(string(ctx.Request.Header.ContentType()))
	switch mediaType {
	case "multipart/form-data":
		u.form = true
		if err := u.readMultipart(requestContext(ctx), body, params["boundary"], maxBody); err != nil {
			return nil, err
		}
	case "application/x-www-form-urlencoded":
		u.form = true
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, newError(http.StatusBadRequest, "bad_request", "malformed form body")
		}
		for k, v := range vals {
			u.fields[k] = v[0]
		}
	default:
		u.raw, u.rawCT = body, mediaType
	}
	return u, nil
}

func (u *upload) readMultipart(ctx context.Context, body []byte, boundary string, maxBody int) error {
	return eachPart(ctx, body, boundary, maxBody, func(name, file string, data []byte) error {
		if file != "" {
			u.files[name] = data
		} else {
			u.fields[name] = string(data)
		}
		return nil
	})
}

// eachPart reads a multipart/form-data body in memory and calls part with
// each part's form name, file name ("" for a plain field) and content. A
// file may be up to maxBody bytes, a field up to maxFieldBytes; the
// copies are reserved from the request's memory budget.
func eachPart(ctx context.Context, body []byte, boundary string, maxBody int, part func(name, file string, data []byte) error) error {
	if boundary == "" {
		return newError(http.StatusBadRequest, "bad_request", "multipart body without a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return newError(http.StatusBadRequest, "bad_request", "malformed multipart body: "+err.Error())
		}
		name, file := p.FormName(), p.FileName()
		limit := maxFieldBytes
		if file != "" {
			limit = maxBody
		}
		// The parts are copies of the body: they count against the budget.
		data, err := readLimited(p, -1, limit, func(n int64) error { return admission.Reserve(ctx, n) })
		p.Close()
		switch {
		case err == errBodyTooLarge:
			return newError(http.StatusRequestEntityTooLarge, "too_large", "form field "+strconv.Quote(name)+" too large")
		case admission.IsRefusal(err):
			return err
		case err != nil:
			return newError(http.StatusBadRequest, "bad_request", "malformed multipart body: "+err.Error())
		}
		if err := part(name, file, data); err != nil {
			return err
		}
	}
}

// field returns a parameter, or def when it is absent or empty.
func (u *upload) field(name, def string) string {
	if v, ok := u.fields[name]; ok && v != "" {
		return v
	}
	return def
}

// flag reads a boolean parameter as forms send them.
func (u *upload) flag(name string) (bool, error) {
	// The spellings rembg's server (pydantic) accepts.
	switch strings.ToLower(u.field(name, "false")) {
	case "1", "true", "yes", "on", "t", "y":
		return true, nil
	case "0", "false", "no", "off", "f", "n":
		return false, nil
	}
	return false, newError(http.StatusBadRequest, "bad_request", name+" must be true or false")
}

// image returns the bytes of the image named field: a multipart part (a
// file, or a plain field holding the bytes), or else the raw body, which
// must then be declared as an image or octet-stream.
func (u *upload) image(field string) ([]byte, error) {
	if data, ok := u.files[field]; ok {
		return data, nil
	}
	if u.form {
		if v, ok := u.fields[field]; ok && v != "" {
			return []byte(v), nil
		}
		return nil, newError(http.StatusBadRequest, "bad_request", "missing form field "+strconv.Quote(field))
	}
	if len(u.raw) == 0 {
		return nil, newError(http.StatusBadRequest, "bad_request", "empty body: send an image as the body or as multipart field "+strconv.Quote(field))
	}
	if u.rawCT != "" && !preprocess.IsImageContentType(u.rawCT) {
		return nil, newError(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"Content-Type "+u.rawCT+" is not an image; send image/* or application/octet-stream, or multipart/form-data")
	}
	return u.raw, nil
}

// decodeImage decodes an uploaded image within the server's limits. It
// reads the header first and reserves the image's working memory against
// the admission budget, imageCost(info, copies), so a request that does not
// fit is refused before a pixel is decoded; the reservation lasts until the
// request ends, or until the caller releases it. Cancellation is checked
// on both sides of the decode, which itself cannot be interrupted (its
// time is bounded by the pixel limit).
func (s *Server) decodeImage(ctx context.Context, data []byte, copies float64) (*image.NRGBA, preprocess.Info, error) {
	info, err := preprocess.DecodeConfig(data, s.opts.ImageLimits)
	if err != nil {
		return nil, info, err
	}
	if err := admission.Reserve(ctx, imageCost(info, copies)); err != nil {
		return nil, info, err
	}
	return s.decodeReserved(ctx, data)
}

// decodeReserved decodes an image whose memory the caller has reserved.
func (s *Server) decodeReserved(ctx context.Context, data []byte) (*image.NRGBA, preprocess.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, preprocess.Info{}, err
	}
	img, info, err := preprocess.Decode(data, s.opts.ImageLimits)
	if err == nil && ctx.Err() != nil {
		return nil, info, ctx.Err()
	}
	return img, info, err
}

// maxRequestPixels bounds the pixels of all the images of one request
// together (a batch of embeddings), read from their headers before any is
// decoded: 1000 MP, some 30 s of decoding on one core.
const maxRequestPixels = 1_000_000_000

// Working memory of an image, in decoded images (4 bytes a pixel): how many
// full-size copies a route holds at its peak, the decoder's own
// intermediate planes included.
const (
	// Background removal: the image, the decoder's planes or the mask, a
	// cut-out (the plain PNG one is composited while it is encoded, the
	// others are built whole), and the encoding.
	mattingCopies = 3
	// Inpainting: the image (filled in place), the mask at one byte a
	// pixel, and the encoding; an uploaded mask is decoded first (its own
	// reservation). Crops whose windows are scaled reserve those windows
	// themselves (models/inpaint).
	inpaintImageCopies = 2.25
	inpaintMaskCopies  = 1.25
	// Captions and embeddings resize the image at once and keep only the
	// model's input.
	resizeCopies = 1.5
)

// imageCost is the memory reserved for an image: its decoded size (4
// bytes a pixel) times copies.
func imageCost(info preprocess.Info, copies float64) int64 {
	return int64(float64(4*int64(info.Width)*int64(info.Height)) * copies)
}
