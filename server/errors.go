package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/recovered"
	"github.com/imgserve/imgserve/models"
	"github.com/imgserve/imgserve/models/caption"
	"github.com/imgserve/imgserve/models/diffusion"
	"github.com/imgserve/imgserve/models/inpaint"
	"github.com/imgserve/imgserve/models/matting"
	"github.com/imgserve/imgserve/preprocess"
	"github.com/imgserve/imgserve/server/admission"
	"github.com/imgserve/imgserve/server/kserve"
)

// apiError is an error with the HTTP status and machine-readable code it
// maps to.
type apiError struct {
	status int
	code   string
	msg    string
	// retryAfter is sent as Retry-After with a 429 or 503.
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.msg }

func newError(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, msg: msg}
}

// statusClientClosed is nginx's status for a request whose client closed
// the connection before the answer.
const statusClientClosed = 499

var (
	errDraining      = newError(http.StatusServiceUnavailable, "draining", "server is shutting down")
	errNotLoaded     = newError(http.StatusServiceUnavailable, "loading", "server is still loading models")
	errBodyTooLarge  = newError(http.StatusRequestEntityTooLarge, "too_large", "request body too large")
	errNotFound      = newError(http.StatusNotFound, "not_found", "no such route")
	errMethodAllowed = newError(http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
)

// classify maps any error to its status and code. The mapping lives here
// alone, so every route answers the same error the same way.
func classify(err error) *apiError {
	var ae *apiError
	var nf kserve.NotFoundError
	var retry interface{ RetryAfter() time.Duration }
	after := time.Second
	if errors.As(err, &retry) {
		after = retry.RetryAfter()
	}
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &nf):
		return newError(http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, admission.ErrTooCostly):
		return newError(http.StatusRequestEntityTooLarge, "too_costly", err.Error())
	case errors.Is(err, admission.ErrBusy), errors.Is(err, admission.ErrOverBudget):
		return &apiError{status: http.StatusTooManyRequests, code: "busy", msg: err.Error(), retryAfter: after}
	case errors.Is(err, inference.ErrOverloaded):
		return &apiError{status: http.StatusTooManyRequests, code: "overloaded", msg: err.Error(), retryAfter: after}
	case errors.Is(err, recovered.ErrPanic):
		return newError(http.StatusInternalServerError, "internal", "internal error")
	case errors.Is(err, kserve.ErrBadInput), errors.Is(err, inference.ErrBadRequest):
		return newError(http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, inference.ErrQueueFull):
		return &apiError{status: http.StatusTooManyRequests, code: "queue_full", msg: "model queue is full; retry later", retryAfter: after}
	case errors.Is(err, matting.ErrAlphaTooLarge):
		return newError(http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, matting.ErrBadParameter), errors.Is(err, matting.ErrRefusedModel):
		return newError(http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, inference.ErrClosed):
		return errDraining
	case errors.Is(err, matting.ErrUnknownModel), errors.Is(err, inpaint.ErrUnknownModel),
		errors.Is(err, caption.ErrUnknownModel), errors.Is(err, diffusion.ErrUnknownModel):
		return newError(http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, models.ErrNotReady):
		return newError(http.StatusServiceUnavailable, "not_ready", err.Error())
	case errors.Is(err, preprocess.ErrEmpty):
		return newError(http.StatusBadRequest, "empty_image", "the image is empty")
	case errors.Is(err, preprocess.ErrUnsupportedFormat):
		return newError(http.StatusUnsupportedMediaType, "unsupported_image", err.Error())
	case errors.Is(err, preprocess.ErrTooLarge):
		return newError(http.StatusRequestEntityTooLarge, "image_too_large", err.Error())
	case errors.Is(err, preprocess.ErrCorrupt):
		return newError(http.StatusUnprocessableEntity, "undecodable_image", err.Error())
	case errors.Is(err, preprocess.ErrInvalidColor):
		return newError(http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return newError(http.StatusGatewayTimeout, "deadline_exceeded", "request deadline passed before the work was done")
	case errors.Is(err, context.Canceled):
		// nginx's "client closed request": nobody reads this answer, but
		// logs and metrics tell it from a server failure.
		return newError(statusClientClosed, "canceled", "request canceled: the client went away")
	}
	return newError(http.StatusInternalServerError, "internal", err.Error())
}

// reasonOf is the failure label for metrics.
func reasonOf(err error) string {
	return classify(err).code
}

// writeError answers in the task API's format,
// {"error":{"code":"...","message":"..."}}.
func writeError(ctx *fasthttp.RequestCtx, err error) {
	ae := classify(err)
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": ae.code, "message": ae.msg}})
	finishError(ctx, ae, body)
}

// writeKServeError answers in KServe v2's format, {"error":"..."}.
func writeKServeError(ctx *fasthttp.RequestCtx, err error) {
	ae := classify(err)
	body, _ := json.Marshal(map[string]string{"error": ae.msg})
	finishError(ctx, ae, body)
}

func finishError(ctx *fasthttp.RequestCtx, ae *apiError, body []byte) {
	if ae.status == http.StatusTooManyRequests || ae.status == http.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", retryAfterSeconds(ae.retryAfter))
	}
	ctx.Response.Header.Del("Content-Encoding")
	ctx.SetStatusCode(ae.status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

// grpcError gives an error its gRPC status, by the same classification as
// HTTP's. Errors that already carry a status (from gRPC itself) keep it.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	ae := classify(err)
	return status.Error(grpcCode(ae), ae.msg)
}

func grpcCode(ae *apiError) codes.Code {
	if ae.code == "canceled" {
		return codes.Canceled
	}
	switch ae.status {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusMethodNotAllowed:
		return codes.Unimplemented
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	}
	return codes.Internal
}
