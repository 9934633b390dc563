// Package recovered turns a panic in one of the server's own goroutines
// (a scheduler's batch, a caption step, a preprocessing worker) into an
// error for the requests it was serving, instead of a crashed process. Every
// recovered panic is logged with its stack and counted by the place it
// happened, for the imgserve_panics_total metric.
//
// recover() only works when called directly by the deferred function, so
// callers write
//
//	defer func() {
//		if v := recover(); v != nil {
//			err = recovered.Report("scheduler.execute", v)
//		}
//	}()
package recovered

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
)

// ErrPanic wraps every error made from a recovered panic: the request hit
// a bug, not a limit, and answers 500.
var ErrPanic = errors.New("internal error (recovered panic)")

var counts sync.Map // where -> *atomic.Uint64

// Report logs and counts a recovered panic value and returns it as an
// error wrapping ErrPanic. where is a fixed code location ("scheduler.execute"),
// never request data: it becomes a metric label.
func Report(where string, v any) error {
	c, _ := counts.LoadOrStore(where, new(atomic.Uint64))
	c.(*atomic.Uint64).Add(1)
	// Privacy: the panic value and stack name code, not request content.
	slog.Default().Error("recovered panic", "where", where, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	return fmt.Errorf("%w in %s", ErrPanic, where)
}

// Go runs f on a new goroutine, recovering (and reporting) a panic.
func Go(where string, f func()) {
	go func() {
		defer func() {
			if v := recover(); v != nil {
				Report(where, v)
			}
		}()
		f()
	}()
}

// Count is one place's number of recovered panics.
type Count struct {
	Where string
	N     uint64
}

// Counts lists every place that has recovered a panic, sorted by place.
func Counts() []Count {
	var out []Count
	counts.Range(func(k, v any) bool {
		out = append(out, Count{Where: k.(string), N: v.(*atomic.Uint64).Load()})
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Where < out[j].Where })
	return out
}

// Group runs functions in parallel and waits for them, like sync.WaitGroup
// with Go, for fork-join work inside a request (image bands, index shards,
// crops). A panic in one of them does not kill the process: the first is
// raised again by Wait, in the waiting goroutine, whose own recovery (the
// request's) turns it into a 500.
type Group struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	first *Panic
}

// Panic is a panic carried from a Group's goroutine to its Wait.
type Panic struct {
	Value any
	Stack []byte
}

func (p *Panic) String() string { return fmt.Sprintf("%v\n%s", p.Value, p.Stack) }

// Go runs f on a new goroutine.
func (g *Group) Go(f func()) {
	g.wg.Go(func() {
		defer func() {
			if v := recover(); v != nil {
				g.mu.Lock()
				if g.first == nil {
					g.first = &Panic{Value: v, Stack: debug.Stack()}
				}
				g.mu.Unlock()
			}
		}()
		f()
	})
}

// Wait waits for every function, then panics with the first panic of
// any, as a *Panic.
func (g *Group) Wait() {
	g.wg.Wait()
	if g.first != nil {
		panic(g.first)
	}
}
