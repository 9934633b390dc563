package matting

import (
	"context"
	"errors"
	"fmt"
	"image"
	"sync"
	"time"

	membudget "github.com/imgserve/imgserve/internal/budget"
	"github.com/imgserve/imgserve/preprocess/matte"
)

// Alpha matting (rembg's a=true) costs far more than the model that made
// the mask: on this project's 2-core machine about 0.4 s and 60 MB at 1
// MP, 11 s and 0.6 GB at 12 MP (bench/README.md). Each request's working
// memory is estimated from its trimap before anything is allocated, and
// the requests in flight share a memory budget: a request that alone
// exceeds it is refused (413), one that does not fit yet waits its turn,
// and when too many wait the next is turned away (429).

// AlphaLimits bound the alpha mattings in flight.
type AlphaLimits struct {
	// MaxBytes is the working memory all alpha mattings in flight may use
	// together, as matte.Estimate counts it.
	MaxBytes int64
	// MaxWaiting is how many requests may wait for memory.
	MaxWaiting int
	// MaxErode bounds rembg's ae (the erosion's side in pixels).
	MaxErode int
}

// DefaultAlphaLimits: 2 GiB in flight (one 12 MP photo, or many small
// ones), 16 waiting, erosion up to 1000 pixels.
var DefaultAlphaLimits = AlphaLimits{MaxBytes: 2 << 30, MaxWaiting: 16, MaxErode: 1000}

// Alpha matting's errors besides matte.ErrFallback.
var (
	ErrAlphaTooLarge = errors.New("alpha matting needs more memory than allowed")
	ErrAlphaBusy     = errors.New("too many alpha mattings waiting")
)

// AlphaMatter runs rembg's alpha matting within AlphaLimits.
type AlphaMatter struct {
	limits AlphaLimits
	budget *budget
}

// NewAlphaMatter applies l, its zero fields taking the defaults.
func NewAlphaMatter(l AlphaLimits) *AlphaMatter {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultAlphaLimits.MaxBytes
	}
	if l.MaxWaiting <= 0 {
		l.MaxWaiting = DefaultAlphaLimits.MaxWaiting
	}
	if l.MaxErode <= 0 {
		l.MaxErode = DefaultAlphaLimits.MaxErode
	}
	return &AlphaMatter{limits: l, budget: newBudget(l.MaxBytes, l.MaxWaiting)}
}

// Limits are the limits in force.
func (a *AlphaMatter) Limits() AlphaLimits { return a.limits }

// AlphaStats describe one alpha matting: the solver's and the time spent
// waiting for memory.
type AlphaStats struct {
	matte.Stats
	Wait time.Duration
}

// Cutout is rembg's alpha_matting_cutout of img by mask. It returns an
// error wrapping matte.ErrFallback where rembg would return the plain
// cutout instead; ErrAlphaTooLarge or ErrAlphaBusy when the limits do not
// allow it; the context's error when it ends first.
func (a *AlphaMatter) Cutout(ctx context.Context, img *image.NRGBA, mask *image.Gray, o matte.Options) (*image.NRGBA, AlphaStats, error) {
	var st AlphaStats
	if err := o.Validate(a.limits.MaxErode); err != nil {
		return nil, st, fmt.Errorf("%w: %w", ErrBadParameter, err)
	}
	trimap, _, need, err := matte.Plan(mask, o)
	if err != nil {
		return nil, st, err
	}
	if need > a.limits.MaxBytes {
		return nil, st, fmt.Errorf("%w: this image and mask need about %d MiB, the server allows %d MiB for alpha matting",
			ErrAlphaTooLarge, need>>20, a.limits.MaxBytes>>20)
	}
	// The server's one memory budget first (internal/budget): refused at
	// once (429) when the process is full, whatever the family; then this
	// family's own share, which queues.
	if err := membudget.Reserve(ctx, need); err != nil {
		return nil, st, err
	}
	defer membudget.Release(ctx, need)
	start := time.Now()
	if err := a.budget.acquire(ctx, need); err != nil {
		return nil, st, err
	}
	defer a.budget.release(need)
	st.Wait = time.Since(start)
	out, ms, err := matte.Cutout(ctx, img, trimap)
	st.Stats = ms
	return out, st, err
}

// budget is a weighted semaphore with a bounded, first-come first-served
// queue.
type budget struct {
	mu         sync.Mutex
	free       int64
	maxWaiting int
	waiters    []*waiter
}

type waiter struct {
	n     int64
	ready chan struct{}
}

func newBudget(size int64, maxWaiting int) *budget {
	return &budget{free: size, maxWaiting: maxWaiting}
}

func (b *budget) acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	if len(b.waiters) == 0 && b.free >= n {
		b.free -= n
		b.mu.Unlock()
		return nil
	}
	if len(b.waiters) >= b.maxWaiting {
		b.mu.Unlock()
		return ErrAlphaBusy
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		select {
		case <-w.ready: // granted meanwhile: give it back
			b.mu.Unlock()
			b.release(n)
		default:
			for i, x := range b.waiters {
				if x == w {
					b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
					break
				}
			}
			b.grant() // the head may fit now that a larger one left
			b.mu.Unlock()
		}
		return ctx.Err()
	}
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.free += n
	b.grant()
	b.mu.Unlock()
}

// grant wakes the waiters at the head of the queue that fit; b.mu is held.
func (b *budget) grant() {
	for len(b.waiters) > 0 && b.waiters[0].n <= b.free {
		w := b.waiters[0]
		b.waiters = b.waiters[1:]
		b.free -= w.n
		close(w.ready)
	}
}
