// Package budget carries a request's memory reservations through its
// context to every layer that allocates for it, so that code far from the
// server (a model family's pipeline) can reserve before it allocates
// without knowing about the server's admission control, which implements
// Reserver (server/admission).
package budget

import "context"

// Reserver is what a request reserves memory from.
type Reserver interface {
	// Reserve claims n bytes or refuses with an error the server answers
	// 429 (or 413 when it could never fit).
	Reserve(n int64) error
	// Release returns n bytes reserved earlier.
	Release(n int64)
}

type key struct{}

// With carries r in ctx.
func With(ctx context.Context, r Reserver) context.Context {
	return context.WithValue(ctx, key{}, r)
}

// From returns ctx's reserver, or nil.
func From(ctx context.Context) Reserver {
	r, _ := ctx.Value(key{}).(Reserver)
	return r
}

// Reserve claims n bytes for the request ctx belongs to; without a
// reserver (tests, benchmarks) it admits everything.
func Reserve(ctx context.Context, n int64) error {
	if r := From(ctx); r != nil {
		return r.Reserve(n)
	}
	return nil
}

// Release returns n bytes of the request ctx belongs to.
func Release(ctx context.Context, n int64) {
	if r := From(ctx); r != nil {
		r.Release(n)
	}
}
