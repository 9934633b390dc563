// Package admission is the server's one front door, shared by every route
// and every transport (HTTP and gRPC): a bounded number of requests in
// flight, and a memory budget that a request reserves against before it
// allocates (its body, an image's decoded size read from the header, a
// tensor's bytes before packing). A request that does not fit is refused at
// once with an *inference.RetryError (IsRefusal), which the transports
// answer with 429 and Retry-After (413 when it could never fit); nothing is
// decoded first.
//
// A transport calls Enter when a request arrives, carries the Ticket in the
// request's context (WithTicket), and calls Done when the request ends.
// Code deeper down reserves through the context with Reserve, so it needs
// no ticket of its own and works unchanged without one (tests, benchmarks).
package admission

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/budget"
)

// Defaults, used where Limits leave a field zero.
const (
	DefaultMaxInFlight = 256
	// DefaultMemoryBudget is used when the machine's memory cannot be read
	// (see SystemMemory).
	DefaultMemoryBudget = 2 << 30
	// defaultRetry is what a memory or in-flight refusal suggests: both
	// free up as soon as any request ends.
	defaultRetry = time.Second
)

// Limits bound what the server takes on at once.
type Limits struct {
	// MaxInFlight is how many requests may be admitted at once.
	MaxInFlight int
	// MemoryBudget is how many bytes admitted requests may reserve
	// together.
	MemoryBudget int64
}

// Errors a refusal wraps; test with errors.Is.
var (
	// ErrBusy: MaxInFlight requests are in flight (429).
	ErrBusy = errors.New("too many requests in flight")
	// ErrOverBudget: the memory budget is taken by other requests (429).
	ErrOverBudget = errors.New("memory budget exhausted")
	// ErrTooCostly: the request alone needs more than the whole budget
	// (413): retrying cannot help.
	ErrTooCostly = errors.New("request needs more memory than the server's budget")
)

// IsRefusal tells an error of Enter or Reserve: the server's limit, not
// the client's mistake.
func IsRefusal(err error) bool {
	return errors.Is(err, ErrBusy) || errors.Is(err, ErrOverBudget) || errors.Is(err, ErrTooCostly)
}

// Controller admits requests. It is safe for concurrent use.
type Controller struct {
	limits Limits

	mu       sync.Mutex
	inflight map[*Ticket]struct{}
	reserved int64

	refused [3]atomic.Uint64 // by reason: busy, over budget, too costly
}

// New makes a controller; zero fields of l take the defaults.
func New(l Limits) *Controller {
	if l.MaxInFlight <= 0 {
		l.MaxInFlight = DefaultMaxInFlight
	}
	if l.MemoryBudget <= 0 {
		l.MemoryBudget = DefaultMemoryBudget
	}
	return &Controller{limits: l, inflight: map[*Ticket]struct{}{}}
}

// Limits are the limits in force.
func (c *Controller) Limits() Limits { return c.limits }

// Ticket is one admitted request. Its reservations last until Done, or
// until released.
type Ticket struct {
	c *Controller
	// ID and Route describe the request for logs (the drain report):
	// never request content.
	ID, Route string
	Start     time.Time
	reserved  int64 // guarded by c.mu
	done      bool
}

// Enter admits a request or refuses it with ErrBusy at once.
func (c *Controller) Enter(id, route string) (*Ticket, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.inflight) >= c.limits.MaxInFlight {
		c.refused[0].Add(1)
		return nil, inference.Refuse(ErrBusy, defaultRetry, fmt.Sprintf("server busy: %d requests in flight", len(c.inflight)))
	}
	t := &Ticket{c: c, ID: id, Route: route, Start: time.Now()}
	c.inflight[t] = struct{}{}
	return t, nil
}

// Reserve claims n more bytes of the memory budget for this request, or
// refuses: ErrTooCostly when the request's reservations would exceed the
// whole budget, else ErrOverBudget when others hold too much of it now.
func (t *Ticket) Reserve(n int64) error {
	if t == nil || n <= 0 {
		return nil
	}
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.reserved+n > c.limits.MemoryBudget {
		c.refused[2].Add(1)
		return inference.Refuse(ErrTooCostly, 0, fmt.Sprintf(
			"request needs %s of memory, more than the server's budget of %s", Size(t.reserved+n), Size(c.limits.MemoryBudget)))
	}
	if c.reserved+n > c.limits.MemoryBudget {
		c.refused[1].Add(1)
		return inference.Refuse(ErrOverBudget, defaultRetry, fmt.Sprintf(
			"server busy: memory budget in use (this request needs %s more, %s of %s free)",
			Size(n), Size(c.limits.MemoryBudget-c.reserved), Size(c.limits.MemoryBudget)))
	}
	c.reserved += n
	t.reserved += n
	return nil
}

// Charge accounts n bytes the request already holds (an output it must
// send): it never refuses, but later requests see the memory as taken.
func (t *Ticket) Charge(n int64) {
	if t == nil || n <= 0 {
		return
	}
	t.c.mu.Lock()
	t.c.reserved += n
	t.reserved += n
	t.c.mu.Unlock()
}

// Release returns n bytes of this request's reservations before it ends
// (an image it no longer holds).
func (t *Ticket) Release(n int64) {
	if t == nil || n <= 0 {
		return
	}
	t.c.mu.Lock()
	n = min(n, t.reserved)
	t.c.reserved -= n
	t.reserved -= n
	t.c.mu.Unlock()
}

// Done ends the request and returns all it reserved. Calling it again does
// nothing.
func (t *Ticket) Done() {
	if t == nil {
		return
	}
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.done {
		return
	}
	t.done = true
	c.reserved -= t.reserved
	t.reserved = 0
	delete(c.inflight, t)
}

// Stats are the controller's current state.
type Stats struct {
	InFlight int
	Reserved int64
	// Refused counts refusals since start, by reason.
	RefusedBusy, RefusedOverBudget, RefusedTooCostly uint64
}

// Stats reads the current state.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	s := Stats{InFlight: len(c.inflight), Reserved: c.reserved}
	c.mu.Unlock()
	s.RefusedBusy, s.RefusedOverBudget, s.RefusedTooCostly = c.refused[0].Load(), c.refused[1].Load(), c.refused[2].Load()
	return s
}

// InFlightRequest describes an admitted request that has not ended.
type InFlightRequest struct {
	ID, Route string
	Age       time.Duration
	Reserved  int64
}

// InFlight lists the requests in flight, oldest first: what a drain that
// runs out of time cuts off.
func (c *Controller) InFlight() []InFlightRequest {
	c.mu.Lock()
	out := make([]InFlightRequest, 0, len(c.inflight))
	now := time.Now()
	for t := range c.inflight {
		out = append(out, InFlightRequest{ID: t.ID, Route: t.Route, Age: now.Sub(t.Start), Reserved: t.reserved})
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b InFlightRequest) int { return int(b.Age - a.Age) })
	return out
}

// WithTicket carries t in ctx for Reserve, Charge and Release, here and in
// internal/budget, through which packages that know nothing of the server
// (a model's pipeline) reserve for what they allocate.
func WithTicket(ctx context.Context, t *Ticket) context.Context {
	if t == nil {
		return ctx
	}
	return budget.With(ctx, t)
}

// FromContext returns the request's ticket, or nil outside an admitted
// request.
func FromContext(ctx context.Context) *Ticket {
	t, _ := budget.From(ctx).(*Ticket)
	return t
}

// Reserve reserves n bytes for the request ctx belongs to; without a
// ticket it admits everything.
func Reserve(ctx context.Context, n int64) error { return FromContext(ctx).Reserve(n) }

// Charge accounts n bytes for the request ctx belongs to.
func Charge(ctx context.Context, n int64) { FromContext(ctx).Charge(n) }

// Release returns n bytes of the request ctx belongs to.
func Release(ctx context.Context, n int64) { FromContext(ctx).Release(n) }

// Size formats a byte count for messages: 1.5 GiB, 300 MiB, 12 KiB.
func Size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ParseSize reads a byte count as flags give it: 1073741824, 512MiB, 2GiB,
// 1.5GB (decimal units are powers of 1000, binary ones of 1024).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("bad size %q: want bytes, or a number with KiB, MiB, GiB, KB, MB or GB", s)
	}
	return int64(v * mult), nil
}
