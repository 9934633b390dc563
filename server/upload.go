package server

import (
	"bytes"
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
		if err := u.readMultipart(body, params["boundary"], maxBody); err != nil {
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

func (u *upload) readMultipart(body []byte, boundary string, maxBody int) error {
	if boundary == "" {
		return newError(http.StatusBadRequest, "bad_request", "multipart body without a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return newError(http.StatusBadRequest, "bad_request", "malformed multipart body: "+err.Error())
		}
		name := part.FormName()
		limit := maxFieldBytes
		if part.FileName() != "" {
			limit = maxBody
		}
		data, err := io.ReadAll(io.LimitReader(part, int64(limit)+1))
		part.Close()
		if err != nil {
			return newError(http.StatusBadRequest, "bad_request", "malformed multipart body: "+err.Error())
		}
		if len(data) > limit {
			return newError(http.StatusRequestEntityTooLarge, "too_large", "form field "+strconv.Quote(name)+" too large")
		}
		if part.FileName() != "" {
			u.files[name] = data
		} else {
			u.fields[name] = string(data)
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

// decodeImage decodes an uploaded image within the server's limits.
func (s *Server) decodeImage(data []byte) (*image.NRGBA, preprocess.Info, error) {
	return preprocess.Decode(data, s.opts.ImageLimits)
}
