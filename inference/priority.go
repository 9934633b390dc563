package inference

import "context"

// Priority orders requests in a model's queue. Interactive requests (a
// client waiting on its answer) go before every Background one (a batch
// job's items), whatever their arrival: a job's backlog never delays an
// interactive request by more than the batches already running.
type Priority int

const (
	// Interactive is the default: single requests, HTTP and gRPC.
	Interactive Priority = iota
	// Background is for batch jobs. Background requests are never load-shed
	// by expected wait nor dropped for waiting past the queue-wait budget:
	// they wait for the interactive ones. They still end with their context.
	Background
)

type priorityKey struct{}

// WithPriority marks every request submitted under ctx with p.
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

// PriorityOf is the priority ctx carries, Interactive by default.
func PriorityOf(ctx context.Context) Priority {
	p, _ := ctx.Value(priorityKey{}).(Priority)
	return p
}
