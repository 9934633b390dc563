// Package jobs runs batch jobs: many images under one task, worked on in
// the background at a lower priority than single requests, their results
// held for a limited time (at most an hour) and then erased.
//
// A job's inputs and results live in memory, in this process (the default)
// or in Redis shared by every replica (OpenRedis); nothing is written to
// disk. Each input is dropped as soon as its item is done; a finished job
// and its results are erased TTL after its last change, their buffers
// zeroed. What a job holds counts against a memory budget reserved up
// front, so a job that does not fit is refused before any work.
package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/imgserve/imgserve/server/admission"
)

// Tasks a job may run: each is the single-image endpoint of the same name
// (embed is PUT /v1/collections/{c}/items/{id}).
const (
	TaskRemoveBackground = "remove-background"
	TaskRemoveWatermark  = "remove-watermark"
	TaskInpaint          = "inpaint"
	TaskCaption          = "caption"
	TaskEmbed            = "embed"
)

// Tasks lists the tasks in the order the API documents them.
var Tasks = []string{TaskRemoveBackground, TaskRemoveWatermark, TaskInpaint, TaskCaption, TaskEmbed}

// MaxTTL is the longest a job may be kept: the promise to users is that
// uploads and results are gone within the hour.
const MaxTTL = time.Hour

// Spec is what every item of a job runs: the task and its parameters, as
// the single-image endpoint takes them.
type Spec struct {
	Task   string            `json:"task"`
	Params map[string]string `json:"params,omitempty"`
}

// Input is one item's input: an image and, by its name, the per-image
// inputs of its task (a mask, boxes).
type Input struct {
	Name  string `json:"name"`
	Image []byte `json:"-"`
	Mask  []byte `json:"-"`
	// Boxes are remove-watermark's rectangles for this image, as JSON.
	Boxes string `json:"boxes,omitempty"`
	// Cost is what the item's result is expected to take, reserved from
	// the budget until the result is there.
	Cost int64 `json:"cost"`
}

// size is the bytes an input holds.
func (in Input) size() int64 { return int64(len(in.Image) + len(in.Mask) + len(in.Boxes)) }

// Output is one item's result.
type Output struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Data        []byte `json:"-"`
}

// Job states, and item states.
const (
	StateQueued   = "queued"
	StateRunning  = "running"
	StateDone     = "done"
	StateFailed   = "failed"
	StateCanceled = "canceled"
)

// ItemStatus is one item's progress.
type ItemStatus struct {
	Name   string `json:"name"`
	Output string `json:"output,omitempty"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Status is a job's state as GET /v1/jobs/{id} reports it.
type Status struct {
	ID         string       `json:"id"`
	Task       string       `json:"task"`
	Status     string       `json:"status"`
	Items      int          `json:"items"`
	Done       int          `json:"done"`
	Failed     int          `json:"failed"`
	CreatedAt  time.Time    `json:"created_at"`
	FinishedAt *time.Time   `json:"finished_at,omitempty"`
	ExpiresAt  time.Time    `json:"expires_at"`
	ItemStatus []ItemStatus `json:"item_status"`
}

// Finished reports whether no item is left to run.
func (s Status) Finished() bool { return s.Done+s.Failed == s.Items }

// state is the job's state from its items' counts.
func state(items, done, failed, started int) string {
	switch {
	case done+failed < items && started == 0 && done+failed == 0:
		return StateQueued
	case done+failed < items:
		return StateRunning
	case done == 0:
		return StateFailed
	}
	return StateDone
}

// Errors the API maps to statuses.
var (
	// ErrNotFound: no such job, or it has expired or been deleted (404).
	ErrNotFound = errors.New("no such job: it may have expired or been deleted")
	// ErrNotReady: the item has not finished (409).
	ErrNotReady = errors.New("item not finished yet")
	// ErrItemFailed: the item failed; its status says why (409).
	ErrItemFailed = errors.New("item failed")
)

// BudgetError refuses a job that does not fit in the jobs' memory budget.
// Full is true when it would not fit even in an empty budget: retrying
// cannot help (413); otherwise it fits once other jobs are erased (429).
type BudgetError struct {
	Need, Free, Budget int64
	Full               bool
	After              time.Duration
}

func (e *BudgetError) Error() string {
	if e.Full {
		return fmt.Sprintf("the job needs %s, more than the whole jobs memory budget of %s: split it into smaller jobs",
			admission.Size(e.Need), admission.Size(e.Budget))
	}
	return fmt.Sprintf("the job needs %s and only %s of the jobs memory budget (%s) is free: retry when earlier jobs have expired",
		admission.Size(e.Need), admission.Size(e.Free), admission.Size(e.Budget))
}

// Clock tells the time and waits; tests use a fake one to prove expiry.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// newID is a job id: 128 random bits, hex.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validID tells an id newID could have made, so that nothing else reaches
// a store's keys.
func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// Runner runs one item: the task's single-image endpoint in process. A
// *RetryLater error (the server is busy) makes the item wait and run
// again; any other fails the item with its message, which the status
// shows the client.
type Runner func(ctx context.Context, w Work) (Output, error)

// RetryLater is the error a Runner returns when the item should wait and
// run again: the server's admission or a model queue refused it for now.
type RetryLater struct {
	After time.Duration
	Err   error
}

func (e *RetryLater) Error() string { return "retry later: " + e.Err.Error() }
func (e *RetryLater) Unwrap() error { return e.Err }

// Zero clears a buffer that held an upload or a result before it is
// dropped, so erased content does not linger in the heap until it is
// reused.
func Zero(b []byte) { clear(b[:cap(b)]) }
