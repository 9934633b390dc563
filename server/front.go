package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/server/admission"
)

// ---- CORS ----

// cors is the allowlist of origins browsers may call from.
type cors struct {
	any     bool
	origins []string
}

func newCORS(origins []string) cors {
	var c cors
	for _, o := range origins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		switch o {
		case "":
		case "*":
			c.any = true
		default:
			c.origins = append(c.origins, o)
		}
	}
	return c
}

// corsHeaders are the request headers a cross-origin call may send, and
// corsExposed the response headers its script may read.
var (
	corsHeaders = []string{"Authorization", "Content-Type", "Content-Encoding", "X-Api-Key", "X-Request-Id",
		"Inference-Header-Content-Length"}
	corsExposed = "Retry-After, X-Request-Id, Server-Timing, Inference-Header-Content-Length"
)

// apply adds the CORS headers to a response when the request comes from an
// allowed origin, and reports whether it did. A request without Origin is
// not a cross-origin one and gets none.
func (c cors) apply(ctx *fasthttp.RequestCtx) bool {
	origin := string(ctx.Request.Header.Peek("Origin"))
	if origin == "" {
		return false
	}
	ctx.Response.Header.Add("Vary", "Origin")
	if !c.any && !slices.Contains(c.origins, origin) {
		return false
	}
	ctx.Response.Header.Set("Access-Control-Allow-Origin", origin)
	ctx.Response.Header.Set("Access-Control-Expose-Headers", corsExposed)
	return true
}

// options answers OPTIONS: a CORS preflight (Origin and
// Access-Control-Request-Method) from an allowed origin gets 204 with the
// path's methods and the allowed headers it asked for; from another origin
// 403; a plain OPTIONS gets the Allow list. Preflights need no API key:
// browsers never send one with them.
func (s *Server) options(ctx *fasthttp.RequestCtx, r route, allowed bool) {
	if len(r.methods) == 0 {
		writeError(ctx, errNotFound)
		return
	}
	methods := allowHeader(r.methods)
	want := string(ctx.Request.Header.Peek("Access-Control-Request-Method"))
	if want == "" || len(ctx.Request.Header.Peek("Origin")) == 0 {
		ctx.Response.Header.Set("Allow", methods+", OPTIONS")
		ctx.SetStatusCode(http.StatusNoContent)
		return
	}
	if !allowed {
		writeError(ctx, newError(http.StatusForbidden, "cors_forbidden", "cross-origin requests from this origin are not allowed"))
		return
	}
	ctx.Response.Header.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
	ctx.Response.Header.Set("Access-Control-Allow-Methods", methods)
	var headers []string
	for _, h := range strings.Split(string(ctx.Request.Header.Peek("Access-Control-Request-Headers")), ",") {
		h = strings.TrimSpace(h)
		if i := slices.IndexFunc(corsHeaders, func(a string) bool { return strings.EqualFold(a, h) }); i >= 0 {
			headers = append(headers, corsHeaders[i])
		}
	}
	if len(headers) > 0 {
		ctx.Response.Header.Set("Access-Control-Allow-Headers", strings.Join(headers, ", "))
	}
	ctx.Response.Header.Set("Access-Control-Max-Age", "600")
	ctx.SetStatusCode(http.StatusNoContent)
}

func allowHeader(methods []string) string {
	out := slices.Clone(methods)
	if slices.Contains(out, "GET") {
		out = append(out, "HEAD")
	}
	return strings.Join(out, ", ")
}

// ---- the body ----

// bodyChunk is the first buffer for a body of unknown or large length; it
// doubles as data arrives.
const bodyChunk = 64 << 10

// readBody reads the request body from the connection, after admission:
// it reserves memory as bytes arrive (never for a length the client merely
// declares) and refuses a body over MaxBodySize with 413, before reading
// it when Content-Length says so. Handlers then find it in
// ctx.Request.Body(). It returns the bytes read.
func (s *Server) readBody(ctx *fasthttp.RequestCtx, t *admission.Ticket) (int, error) {
	limit := s.opts.MaxBodySize
	declared := ctx.Request.Header.ContentLength()
	if declared > limit {
		return 0, errBodyTooLarge
	}
	stream := ctx.Request.BodyStream()
	if stream == nil {
		return 0, nil // no body
	}
	buf, err := readLimited(stream, declared, limit, t.Reserve)
	if err != nil {
		return len(buf), err
	}
	ctx.Request.SetBodyRaw(buf)
	return len(buf), nil
}

// readLimited reads r to its end into a buffer that starts small and
// doubles, reserving each growth first, so memory follows the bytes that
// arrived. sizeHint (-1: unknown) is a length r ends at (fasthttp's body
// stream stops at Content-Length), where reading stops; more than limit
// bytes is errBodyTooLarge.
func readLimited(r io.Reader, sizeHint, limit int, reserve func(int64) error) ([]byte, error) {
	size := bodyChunk
	if sizeHint >= 0 {
		size = min(sizeHint, bodyChunk)
	}
	size = min(size, limit+1)
	if err := reserve(int64(size)); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, size)
	for {
		if sizeHint >= 0 && len(buf) == sizeHint {
			return buf, nil
		}
		if len(buf) == cap(buf) {
			next := max(min(2*cap(buf), limit+1), len(buf)+1)
			if sizeHint >= 0 {
				next = min(next, sizeHint)
			}
			if err := reserve(int64(next - cap(buf))); err != nil {
				return nil, err
			}
			nb := make([]byte, len(buf), next)
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return nil, errBodyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, bodyError(err)
		}
	}
}

// discardBody reads what is left of a refused request's body, into
// nothing, so that the connection can close or go on without a reset: a
// socket closed with unread data answers the client with a TCP reset,
// which can destroy the response (a 429, a 401) before the client reads
// it. It costs no memory; a body declared over the limit, or one that
// will not end, closes the connection instead.
func (s *Server) discardBody(ctx *fasthttp.RequestCtx) {
	stream := ctx.Request.BodyStream()
	if stream == nil {
		return
	}
	limit := int64(s.opts.MaxBodySize)
	if int64(ctx.Request.Header.ContentLength()) > limit {
		ctx.SetConnectionClose()
		return
	}
	if n, err := io.Copy(io.Discard, io.LimitReader(stream, limit+1)); n > limit || err != nil {
		ctx.SetConnectionClose()
	}
}

func bodyError(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return newError(http.StatusRequestTimeout, "body_timeout", "the request body did not arrive in time")
	}
	return newError(http.StatusBadRequest, "bad_request", "reading the request body: "+err.Error())
}

// ---- client disconnects ----

// watchDisconnect cancels a request whose client closes its connection (or
// resets it) while the request is served, so its work stops and its queue
// slot frees. fasthttp does not report a gone client until it writes the
// response, so this peeks at the socket, without consuming a byte, each
// time it turns readable: end-of-file or an error means gone; data means a
// pipelined request, and the watch ends there. (Go's net/http does the
// same with a background read.) Over TLS a client that sends close_notify
// first looks like data, so there only an abrupt close is seen. The
// returned stop must be called before the response is written.
func watchDisconnect(c net.Conn, cancel context.CancelFunc) (stop func()) {
	type netConner interface{ NetConn() net.Conn }
	if tc, ok := c.(netConner); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return func() {}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	// The body has been read: nothing else reads this connection until the
	// response is written, and fasthttp sets its own deadline for the next
	// request then.
	c.SetReadDeadline(time.Time{})
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		var b [1]byte
		rc.Read(func(fd uintptr) bool {
			select {
			case <-done:
				return true
			default:
			}
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case err == syscall.EAGAIN || err == syscall.EINTR:
				return false // nothing yet: wait until readable
			case n == 0 || err != nil:
				cancel() // end of file or reset: the client is gone
			}
			return true
		})
	}()
	return func() {
		close(done)
		c.SetReadDeadline(time.Now()) // wakes the wait above
		<-stopped
		c.SetReadDeadline(time.Time{})
	}
}

// retryAfterSeconds rounds a wait up to whole seconds for Retry-After, at
// least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}
