package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/gzip"
	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/server/admission"
)

// requestBody returns the body, inflating a gzip or deflate Content-Encoding
// (Triton's clients can compress requests). The inflated size is bounded by
// maxSize, so a compressed bomb gets 413, not the server's memory, and is
// reserved against the admission budget as it grows.
func requestBody(ctx *fasthttp.RequestCtx, maxSize int) ([]byte, error) {
	body := ctx.Request.Body()
	enc := string(ctx.Request.Header.Peek("Content-Encoding"))
	var r io.ReadCloser
	switch enc {
	case "", "identity":
		return body, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, newError(http.StatusBadRequest, "bad_request", "malformed gzip body")
		}
		r = zr
	case "deflate":
		r = flate.NewReader(bytes.NewReader(body))
	default:
		return nil, newError(http.StatusUnsupportedMediaType, "unsupported_encoding", "unsupported Content-Encoding "+enc)
	}
	defer r.Close()
	rctx := requestContext(ctx)
	out, err := readLimited(r, -1, maxSize, func(n int64) error { return admission.Reserve(rctx, n) })
	switch {
	case err == errBodyTooLarge, admission.IsRefusal(err):
		return nil, err
	case err != nil:
		return nil, newError(http.StatusBadRequest, "bad_request", "malformed "+enc+" body")
	}
	return out, nil
}

// Bodies smaller than this are sent as they are: compressing them costs more
// than it saves.
const compressMin = 1024

var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// writeBody sets the response body, gzip-compressed when the client accepts
// it and the content is text. Images are already compressed and go as is.
func writeBody(ctx *fasthttp.RequestCtx, body []byte) {
	ct := string(ctx.Response.Header.ContentType())
	compressible := bytes.HasPrefix([]byte(ct), []byte("application/json")) || bytes.HasPrefix([]byte(ct), []byte("text/"))
	if len(body) < compressMin || !compressible || !ctx.Request.Header.HasAcceptEncoding("gzip") {
		ctx.SetBody(body)
		return
	}
	var buf bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&buf)
	zw.Write(body)
	zw.Close()
	gzipWriters.Put(zw)
	ctx.Response.Header.Set("Content-Encoding", "gzip")
	ctx.Response.Header.Add("Vary", "Accept-Encoding")
	ctx.SetBody(buf.Bytes())
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(ctx, err)
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	writeBody(ctx, body)
}
