package matting

import (
	"context"
	"errors"
	"image"
	"runtime"
	"testing"

	"github.com/imgserve/imgserve/preprocess/matte"
)

func (b *budget) waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiters)
}

func waitFor(cond func() bool) {
	for !cond() {
		runtime.Gosched()
	}
}

// TestBudgetQueuesInOrderAndSheds: a request that does not fit waits, in
// arrival order; past MaxWaiting the next is refused at once; a waiter
// whose context ends leaves the queue.
func TestBudgetQueuesInOrderAndSheds(t *testing.T) {
	b := newBudget(10, 2)
	ctx := context.Background()
	if err := b.acquire(ctx, 8); err != nil {
		t.Fatal(err)
	}
	granted := make(chan int64, 2)
	go func() { b.acquire(ctx, 5); granted <- 5 }()
	waitFor(func() bool { return b.waiting() == 1 })
	// 1 fits in what is free, but must queue behind the 5 rather than
	// overtake it (which would starve large requests).
	go func() { b.acquire(ctx, 1); granted <- 1 }()
	waitFor(func() bool { return b.waiting() == 2 })
	if err := b.acquire(ctx, 1); !errors.Is(err, ErrAlphaBusy) {
		t.Fatalf("third waiter: %v, want ErrAlphaBusy", err)
	}
	b.release(8)
	got := <-granted + <-granted
	if got != 6 || b.waiting() != 0 || b.free != 4 {
		t.Errorf("after the release: granted %d, %d waiting, %d free; want 6, 0, 4", got, b.waiting(), b.free)
	}
	b.release(5)
	b.release(1)
	if b.free != 10 {
		t.Errorf("free %d after everything was released, want 10", b.free)
	}

	if err := b.acquire(ctx, 10); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- b.acquire(cctx, 3) }()
	waitFor(func() bool { return b.waiting() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("canceled waiter: %v", err)
	}
	if b.waiting() != 0 {
		t.Error("canceled waiter still queued")
	}
	b.release(10)
	if b.free != 10 {
		t.Errorf("free %d, want 10", b.free)
	}
}

func TestAlphaMatterRefusesWhatCannotFit(t *testing.T) {
	a := NewAlphaMatter(AlphaLimits{MaxBytes: 1 << 10})
	img := image.NewNRGBA(image.Rect(0, 0, 64, 64))
	mask := image.NewGray(img.Rect)
	for i := range mask.Pix {
		if i%64 > 20 {
			mask.Pix[i] = 255
		}
	}
	if _, _, err := a.Cutout(context.Background(), img, mask, matte.Defaults); !errors.Is(err, ErrAlphaTooLarge) {
		t.Errorf("64x64 in 1 KiB: %v, want ErrAlphaTooLarge", err)
	}
	if _, _, err := a.Cutout(context.Background(), img, mask, matte.Options{ForegroundThreshold: 300}); !errors.Is(err, ErrBadParameter) {
		t.Errorf("af=300: %v, want ErrBadParameter", err)
	}
}
