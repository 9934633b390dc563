package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zip"
	"github.com/valyala/fasthttp"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/recovered"
	"github.com/imgserve/imgserve/jobs"
	"github.com/imgserve/imgserve/preprocess"
	"github.com/imgserve/imgserve/server/admission"
)

// Batch jobs: many images under one task, each item run in process through
// the task's own single-image route (so its result is that route's, byte
// for byte), at the scheduler's background priority.
func init() {
	addFeature(
		Feature{Method: "POST", Pattern: "/v1/jobs", Background: true, Handle: (*Server).createJob},
		Feature{Method: "GET", Pattern: "/v1/jobs/{id}", Background: true, Handle: (*Server).jobStatus},
		Feature{Method: "DELETE", Pattern: "/v1/jobs/{id}", Background: true, Handle: (*Server).deleteJob},
		Feature{Method: "GET", Pattern: "/v1/jobs/{id}/events", Background: true, Handle: (*Server).jobEvents},
		Feature{Method: "GET", Pattern: "/v1/jobs/{id}/results", Background: true, Handle: (*Server).jobResults},
		Feature{Method: "GET", Pattern: "/v1/jobs/{id}/items/{name}", Background: true, Handle: (*Server).jobItem},
	)
}

// JobOptions configure batch jobs.
type JobOptions struct {
	// Backend keeps the jobs: jobs.OpenRedis's, shared by replicas; nil
	// keeps them in this process (jobs.NewMemory over Memory and TTL).
	// The caller closes a Backend it gives.
	Backend jobs.Backend
	// TTL is how long a job is kept after its last change (default 15
	// minutes, at most jobs.MaxTTL).
	TTL time.Duration
	// Memory bounds what the in-process store holds (default 1 GiB).
	Memory int64
	// Limits bound one job's input (zero: jobs.DefaultLimits).
	Limits jobs.Limits
	// Workers is how many items this process runs at once (0: twice the
	// cores).
	Workers int
	// Clock is for tests of expiry; nil is the real one.
	Clock jobs.Clock
}

// Defaults of JobOptions.
const (
	DefaultJobTTL    = 15 * time.Minute
	DefaultJobMemory = 1 << 30
)

// jobRoute is the single-image route a task's items run through.
func jobRoute(task string, params map[string]string, name string) (method, path string) {
	switch task {
	case jobs.TaskRemoveBackground:
		return "POST", "/v1/remove-background"
	case jobs.TaskRemoveWatermark:
		return "POST", "/v1/remove-watermark"
	case jobs.TaskInpaint:
		return "POST", "/v1/inpaint"
	case jobs.TaskCaption:
		return "POST", "/v1/caption"
	case jobs.TaskEmbed:
		return "PUT", "/v1/collections/" + params[embedCollection] + "/items/" + jobs.Stem(name)
	}
	return "", ""
}

// embedCollection is the parameter naming an embed job's collection; each
// image becomes the item named by its file name without the extension.
const embedCollection = "collection"

// startJobs starts the job workers (and the in-process store), once, when
// the server starts serving.
func (s *Server) startJobs() {
	s.jobsOnce.Do(func() {
		o := s.opts.Jobs
		b := o.Backend
		if b == nil {
			s.ownBackend = jobs.NewMemory(o.TTL, o.Memory, o.Clock)
			b = s.ownBackend
		}
		s.jobs = jobs.NewManager(jobs.Options{Backend: b, Run: s.runJobItem, TTL: o.TTL, Workers: o.Workers,
			Busy: s.interactiveBusy, Ran: s.opts.Metrics.jobItemRan, Logger: s.opts.Logger, Clock: o.Clock})
	})
}

// stopJobs stops the workers after the items they run.
func (s *Server) stopJobs() {
	s.jobsOnce.Do(func() {}) // none start after this
	if s.jobs != nil {
		s.jobs.Close()
	}
	if s.ownBackend != nil {
		s.ownBackend.Close()
	}
}

// JobMemory is the in-process job store, nil with a Backend of the
// caller's or before Serve: tests read what it holds.
func (s *Server) JobMemory() *jobs.Memory { return s.ownBackend }

func (s *Server) jobManager() (*jobs.Manager, error) {
	if s.jobs == nil {
		return nil, newError(http.StatusServiceUnavailable, "not_ready", "jobs start when the server serves")
	}
	return s.jobs, nil
}

// jobError maps the jobs package's errors.
func jobError(err error) error {
	var be *jobs.BudgetError
	var ie *jobs.InputError
	switch {
	case errors.As(err, &be) && be.Full:
		// Retrying cannot help: 413, as admission answers a request larger
		// than its whole budget.
		return newError(http.StatusRequestEntityTooLarge, "too_costly", err.Error())
	case errors.As(err, &be):
		return &apiError{status: http.StatusTooManyRequests, code: "jobs_memory_busy", msg: err.Error(), retryAfter: be.After}
	case errors.As(err, &ie) && ie.TooLarge:
		return newError(http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.As(err, &ie):
		return newError(http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, jobs.ErrNotFound), errors.Is(err, jobs.ErrNoItem):
		return newError(http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, jobs.ErrNotReady):
		return newError(http.StatusConflict, "not_ready", err.Error())
	case errors.Is(err, jobs.ErrItemFailed):
		return newError(http.StatusConflict, "item_failed", "the item failed: its status in GET /v1/jobs/{id} says why")
	}
	return err
}

// createJob is POST /v1/jobs: multipart "image" parts (and "mask" parts by
// the same names) with the task's fields, or a zip archive as the body
// (application/zip, fields in the query string) or as a multipart
// "archive" part. Everything is checked, every image's header read and
// the job's memory reserved before it is accepted.
func (s *Server) createJob(ctx *fasthttp.RequestCtx, _ routeParams) {
	m, err := s.jobManager()
	if err != nil {
		writeError(ctx, err)
		return
	}
	params, images, masks, err := s.readJobUpload(ctx)
	if err != nil {
		writeError(ctx, jobError(err))
		return
	}
	spec, boxes, err := s.jobSpec(requestContext(ctx), params)
	if err != nil {
		writeError(ctx, err)
		return
	}
	inputs, err := jobs.Assemble(spec.Task, images, masks, boxes, s.opts.Jobs.Limits)
	if err == nil {
		err = s.costJobInputs(spec.Task, inputs)
	}
	if err == nil {
		var st jobs.Status
		if st, err = m.Submit(requestContext(ctx), spec, inputs); err == nil {
			ctx.Response.Header.Set("Location", "/v1/jobs/"+st.ID)
			writeJSON(ctx, http.StatusAccepted, map[string]any{"id": st.ID, "task": st.Task, "status": st.Status,
				"items": st.Items, "expires_at": st.ExpiresAt, "location": "/v1/jobs/" + st.ID})
			return
		}
	}
	writeError(ctx, jobError(err))
}

// readJobUpload reads the body: an archive, or multipart parts of which
// "image" and "mask" files may repeat.
func (s *Server) readJobUpload(ctx *fasthttp.RequestCtx) (params map[string]string, images, masks []jobs.File, err error) {
	body, err := requestBody(ctx, s.opts.MaxBodySize)
	if err != nil {
		return nil, nil, nil, err
	}
	params = map[string]string{}
	ctx.QueryArgs().VisitAll(func(k, v []byte) { params[string(k)] = string(v) })
	mediaType, mp, _ := mime.ParseMediaType(string(ctx.Request.Header.ContentType()))
	switch mediaType {
	case "application/zip", "application/x-zip-compressed":
		images, masks, err = jobs.ReadZip(body, s.opts.Jobs.Limits)
		return params, images, masks, err
	case "multipart/form-data":
	default:
		return nil, nil, nil, newError(http.StatusUnsupportedMediaType, "unsupported_media_type",
			`send multipart/form-data with "image" parts, or an application/zip archive`)
	}
	var archive []byte
	err = eachPart(requestContext(ctx), body, mp["boundary"], s.opts.MaxBodySize, func(name, file string, data []byte) error {
		switch {
		case name == "image" && file != "":
			images = append(images, jobs.File{Name: file, Data: data})
		case name == "mask" && file != "":
			masks = append(masks, jobs.File{Name: file, Data: data})
		case name == "archive":
			archive = data
		case name == "image" || name == "mask":
			return newError(http.StatusBadRequest, "bad_request", strconv.Quote(name)+` parts need a file name: results and masks match images by it`)
		default:
			params[name] = string(data)
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if archive != nil {
		if len(images) > 0 {
			return nil, nil, nil, newError(http.StatusBadRequest, "bad_request", `send "image" parts or an "archive", not both`)
		}
		zi, zm, err := jobs.ReadZip(archive, s.opts.Jobs.Limits)
		if err != nil {
			return nil, nil, nil, err
		}
		images, masks = zi, append(masks, zm...)
	}
	return params, images, masks, nil
}

// jobSpec checks the task and takes its parameters, which its items pass
// to the single-image route as they are.
func (s *Server) jobSpec(ctx context.Context, params map[string]string) (jobs.Spec, string, error) {
	task := params["task"]
	delete(params, "task")
	boxes := params["boxes"]
	delete(params, "boxes")
	if !slices.Contains(jobs.Tasks, task) {
		return jobs.Spec{}, "", newError(http.StatusBadRequest, "bad_request",
			fmt.Sprintf("task must be one of %s, not %q", strings.Join(jobs.Tasks, ", "), task))
	}
	if task == jobs.TaskEmbed {
		c := params[embedCollection]
		if c == "" {
			return jobs.Spec{}, "", newError(http.StatusBadRequest, "bad_request", `an embed job needs "collection", an existing collection`)
		}
		if _, err := s.opts.Index.Info(ctx, c); err != nil {
			return jobs.Spec{}, "", collectionError(c, err)
		}
	}
	for k, v := range params {
		if len(v) > maxFieldBytes {
			return jobs.Spec{}, "", newError(http.StatusBadRequest, "bad_request", "parameter "+strconv.Quote(k)+" too long")
		}
	}
	return jobs.Spec{Task: task, Params: params}, boxes, nil
}

// costJobInputs reads every image's (and mask's) header, refusing what the
// single-image route would refuse for its size or format before any work,
// and sets what each result is expected to take: a decoded image's worth
// (4 bytes a pixel) for an image, a little JSON for captions and
// embeddings.
func (s *Server) costJobInputs(task string, inputs []jobs.Input) error {
	for i := range inputs {
		in := &inputs[i]
		info, err := preprocess.DecodeConfig(in.Image, s.opts.ImageLimits)
		if err == nil && in.Mask != nil {
			_, err = preprocess.DecodeConfig(in.Mask, s.opts.ImageLimits)
		}
		if err != nil {
			ae := classify(err)
			return &apiError{status: ae.status, code: ae.code, msg: fmt.Sprintf("image %q: %s", in.Name, ae.msg)}
		}
		in.Cost = 4 << 10
		if task != jobs.TaskCaption && task != jobs.TaskEmbed {
			in.Cost += 4 * int64(info.Width) * int64(info.Height)
		}
	}
	return nil
}

func (s *Server) jobStatus(ctx *fasthttp.RequestCtx, p routeParams) {
	_, st, err := s.jobAndStatus(ctx, p)
	if err != nil {
		writeError(ctx, err)
		return
	}
	writeJSON(ctx, http.StatusOK, st)
}

// jobAndStatus finds the route's job.
func (s *Server) jobAndStatus(ctx *fasthttp.RequestCtx, p routeParams) (*jobs.Manager, jobs.Status, error) {
	m, err := s.jobManager()
	if err != nil {
		return nil, jobs.Status{}, err
	}
	st, err := m.Status(requestContext(ctx), p.Var("id"))
	return m, st, jobError(err)
}

func (s *Server) deleteJob(ctx *fasthttp.RequestCtx, p routeParams) {
	m, err := s.jobManager()
	if err == nil {
		if err = m.Delete(requestContext(ctx), p.Var("id")); err == nil {
			writeJSON(ctx, http.StatusOK, map[string]any{"id": p.Var("id"), "status": jobs.StateCanceled, "erased": true})
			return
		}
	}
	writeError(ctx, jobError(err))
}

func (s *Server) jobItem(ctx *fasthttp.RequestCtx, p routeParams) {
	m, err := s.jobManager()
	if err == nil {
		var out jobs.Output
		if out, err = m.Output(requestContext(ctx), p.Var("id"), p.Var("name")); err == nil {
			ctx.SetStatusCode(http.StatusOK)
			ctx.SetContentType(out.ContentType)
			ctx.Response.Header.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": out.Name}))
			ctx.SetBody(out.Data)
			return
		}
	}
	writeError(ctx, jobError(err))
}

// jobPoll is how often a stream looks at a job's progress: the store may
// be another replica's Redis, which has no one to tell this one.
const jobPoll = 100 * time.Millisecond

// jobEvents is GET /v1/jobs/{id}/events: Server-Sent Events, a "progress"
// event whenever an item finishes (the status without its items), and at
// the end "done" with the whole status, or "gone" when the job was
// deleted or expired.
func (s *Server) jobEvents(ctx *fasthttp.RequestCtx, p routeParams) {
	m, st, err := s.jobAndStatus(ctx, p)
	if err != nil {
		writeError(ctx, err)
		return
	}
	rctx, cancel, done := streamRequest(ctx)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer done()
		last := -1
		for {
			if n := st.Done + st.Failed; n != last || st.Finished() {
				last = n
				ev, body := "progress", st
				body.ItemStatus = nil
				if st.Finished() {
					ev, body = "done", st
				}
				data, _ := json.Marshal(body)
				fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev, data)
				if w.Flush() != nil {
					cancel()
					return
				}
				if st.Finished() {
					return
				}
			}
			select {
			case <-rctx.Done():
				return
			case <-time.After(jobPoll):
			}
			if st, err = m.Status(rctx, p.Var("id")); err != nil {
				if errors.Is(err, jobs.ErrNotFound) {
					fmt.Fprintf(w, "event: gone\ndata: {\"id\":%q}\n\n", p.Var("id"))
					w.Flush()
				}
				return
			}
		}
	})
}

// jobResults is GET /v1/jobs/{id}/results, streamed as items finish, in
// the job's order: a zip of one result per image under its name (stored:
// images are compressed already), with errors.jsonl naming failed items;
// for captions and embeddings, JSON lines, one per image.
func (s *Server) jobResults(ctx *fasthttp.RequestCtx, p routeParams) {
	m, st, err := s.jobAndStatus(ctx, p)
	if err != nil {
		writeError(ctx, err)
		return
	}
	id := p.Var("id")
	lines := st.Task == jobs.TaskCaption || st.Task == jobs.TaskEmbed
	rctx, cancel, done := streamRequest(ctx)
	if lines {
		ctx.SetContentType("application/x-ndjson")
	} else {
		ctx.SetContentType("application/zip")
		ctx.Response.Header.Set("Content-Disposition", `attachment; filename="job-`+id+`.zip"`)
	}
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer done()
		var zw *zip.Writer
		if !lines {
			zw = zip.NewWriter(w)
		}
		var failed []jobs.ItemStatus
		for i := range st.Items {
			out, item, err := awaitItem(rctx, m, id, &st, i)
			switch {
			case err != nil:
				// Deleted, expired or out of time: the stream ends short,
				// an incomplete zip the client sees as one.
				cancel()
				return
			case item.Status == jobs.StateFailed && lines:
				w.Write(errorLine(item))
			case item.Status == jobs.StateFailed:
				failed = append(failed, item)
			case lines:
				w.Write(jsonLine(item.Name, out.Data))
			default:
				f, err := zw.CreateHeader(&zip.FileHeader{Name: out.Name, Method: zip.Store, Modified: time.Now()})
				if err == nil {
					_, err = f.Write(out.Data)
				}
				if err != nil {
					cancel()
					return
				}
			}
			if w.Flush() != nil {
				cancel()
				return
			}
		}
		if zw != nil {
			if len(failed) > 0 {
				f, _ := zw.Create("errors.jsonl")
				for _, it := range failed {
					f.Write(errorLine(it))
				}
			}
			zw.Close()
		}
		w.Flush()
	})
}

// errorLine is a failed item's JSON line: its name and why it failed.
func errorLine(it jobs.ItemStatus) []byte {
	b, _ := json.Marshal(map[string]string{"name": it.Name, "error": it.Error})
	return append(b, '\n')
}

// jsonLine is a result's JSON object with the image's name first.
func jsonLine(name string, result []byte) []byte {
	n, _ := json.Marshal(name)
	line := append([]byte(`{"name":`), n...)
	if r := bytes.TrimSpace(result); len(r) > 2 && r[0] == '{' {
		line = append(append(line, ','), r[1:]...)
	} else {
		line = append(line, '}')
	}
	return append(line, '\n')
}

// awaitItem waits for item i to finish and returns it with its result.
// st is the job's status as last read: it is read again only while item i
// has not finished, so a finished job's results take one read of its
// status, not one per item.
func awaitItem(ctx context.Context, m *jobs.Manager, id string, st *jobs.Status, i int) (jobs.Output, jobs.ItemStatus, error) {
	for {
		item := st.ItemStatus[i]
		switch item.Status {
		case jobs.StateFailed:
			return jobs.Output{}, item, nil
		case jobs.StateDone:
			out, err := m.OutputAt(ctx, id, i)
			return out, item, err
		}
		select {
		case <-ctx.Done():
			return jobs.Output{}, item, ctx.Err()
		case <-time.After(jobPoll):
		}
		next, err := m.Status(ctx, id)
		if err != nil {
			return jobs.Output{}, item, err
		}
		*st = next
	}
}

// runJobItem runs one item through its task's single-image route, in
// process: admitted like any request (a refusal makes it wait and try
// again), under the request deadline, at the background priority.
func (s *Server) runJobItem(ctx context.Context, w jobs.Work) (jobs.Output, error) {
	method, target := jobRoute(w.Spec.Task, w.Spec.Params, w.Input.Name)
	r, params, err := s.match(method, target) // the path unescaped, as fasthttp matches it
	if err != nil {
		return jobs.Output{}, err
	}
	t, err := s.opts.Admission.Enter("job-"+w.Job[:8]+"/"+strconv.Itoa(w.Index), r.name())
	if err != nil {
		return jobs.Output{}, retryLater(err)
	}
	defer t.Done()
	rctx, cancel := context.WithTimeout(inference.WithPriority(admission.WithTicket(ctx, t), inference.Background), s.opts.RequestTimeout)
	defer cancel()

	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.URI().SetPath(target)
	var body bytes.Buffer
	body.Grow(len(w.Input.Image) + len(w.Input.Mask) + 4096) // one buffer to zero after
	mw := multipart.NewWriter(&body)
	for k, v := range w.Spec.Params {
		if k != embedCollection || w.Spec.Task != jobs.TaskEmbed {
			mw.WriteField(k, v)
		}
	}
	if w.Input.Boxes != "" {
		mw.WriteField("boxes", w.Input.Boxes)
	}
	writeFile(mw, "image", w.Input.Name, w.Input.Image)
	if w.Input.Mask != nil {
		writeFile(mw, "mask", "mask", w.Input.Mask)
	}
	mw.Close()
	req.Header.SetContentType(mw.FormDataContentType())
	req.SetBodyRaw(body.Bytes())

	var rc fasthttp.RequestCtx
	rc.Init(&req, nil, nil)
	jobs.Zero(body.Bytes())
	defer jobs.Zero(rc.Request.Body())
	rc.SetUserValue(requestContextKey{}, rctx)
	rc.SetUserValue(requestStateKey{}, &requestState{cancel: cancel, ticket: t})
	func() {
		defer func() {
			if v := recover(); v != nil {
				writeError(&rc, recovered.Report("job.item", v))
			}
		}()
		r.Handle(s, &rc, params)
	}()
	code := rc.Response.StatusCode()
	data := rc.Response.Body()
	defer jobs.Zero(data)
	switch {
	case code == http.StatusOK:
		ct := string(rc.Response.Header.ContentType())
		return jobs.Output{Name: jobs.Stem(w.Input.Name) + extension(ct), ContentType: ct, Data: bytes.Clone(data)}, nil
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		after, _ := strconv.Atoi(string(rc.Response.Header.Peek("Retry-After")))
		return jobs.Output{}, &jobs.RetryLater{After: time.Duration(after) * time.Second, Err: errors.New(errorMessage(data))}
	}
	return jobs.Output{}, errors.New(errorMessage(data))
}

func writeFile(mw *multipart.Writer, field, name string, data []byte) {
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", mime.FormatMediaType("form-data", map[string]string{"name": field, "filename": name}))
	h.Set("Content-Type", "application/octet-stream")
	f, _ := mw.CreatePart(h)
	f.Write(data)
}

// retryLater turns a refusal of the front door into a wait.
func retryLater(err error) error {
	ae := classify(err)
	return &jobs.RetryLater{After: ae.retryAfter, Err: err}
}

// errorMessage is the message of a task-API error body.
func errorMessage(body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
		return "the item failed"
	}
	return e.Error.Message
}

// extension is a result's file extension by its type.
func extension(contentType string) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "image/png":
		return ".png"
	case "image/jpeg":
		return ".jpg"
	case "image/webp":
		return ".webp"
	case "application/json":
		return ".json"
	}
	return ""
}
