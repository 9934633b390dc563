package jobs

import (
	"context"
	"time"
)

// Backend keeps jobs and hands their items to workers: Memory in this
// process, or Redis shared by replicas.
type Backend interface {
	// Create stores a job with its inputs and queues its items, or refuses
	// it with a *BudgetError before storing anything.
	Create(ctx context.Context, st Status, spec Spec, inputs []Input) error
	// Status is the job's current state; ErrNotFound once it is erased.
	Status(ctx context.Context, id string) (Status, error)
	// Output is item i's result: ErrNotReady or ErrItemFailed until there
	// is one.
	Output(ctx context.Context, id string, i int) (Output, error)
	// Delete erases a job at once; its items still queued are dropped and
	// a running one's result is discarded.
	Delete(ctx context.Context, id string) error
	// Next blocks until an item is ready to run and marks it running.
	Next(ctx context.Context) (Work, error)
	// Finish records an item's result, or its failure when failure is not
	// empty, drops its input and tells the job's state after.
	Finish(ctx context.Context, w Work, out Output, failure string) (Status, error)
	// Close stops handing out work.
	Close() error
}

// Work is one item handed to a worker.
type Work struct {
	Job   string
	Index int
	Spec  Spec
	Input Input
	// Reclaimed: this replica took the item over from one that stopped
	// renewing it (Redis only).
	Reclaimed bool
	// ref is the backend's handle on the item (a stream message id).
	ref string
}

// expiry is when a job last changed at now is erased.
func expiry(now time.Time, ttl time.Duration) time.Time { return now.Add(ttl) }
