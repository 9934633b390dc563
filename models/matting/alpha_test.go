package matting

import (
	"context"
	"errors"
	"image"
	"testing"

	"github.com/imgserve/imgserve/preprocess/matte"
	"github.com/imgserve/imgserve/server/admission"
)

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

// Alpha matting reserves its working memory from the request's admission
// ticket, the server's one memory budget, and gives it back when done.
func TestAlphaMattingReservesFromTheMemoryBudget(t *testing.T) {
	img := image.NewNRGBA(image.Rect(0, 0, 64, 64))
	mask := image.NewGray(img.Rect)
	for i := range mask.Pix {
		if i%64 > 20 {
			mask.Pix[i] = 255
		}
	}
	_, _, need, err := matte.Plan(mask, matte.Defaults)
	if err != nil || need <= 0 {
		t.Fatalf("plan: %d %v", need, err)
	}
	a := NewAlphaMatter(AlphaLimits{})
	for _, c := range []struct {
		budget int64
		want   error
	}{{need - 1, admission.ErrTooCostly}, {need, nil}} {
		ctl := admission.New(admission.Limits{MemoryBudget: c.budget})
		ticket, err := ctl.Enter("1", "test")
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = a.Cutout(admission.WithTicket(context.Background(), ticket), img, mask, matte.Defaults)
		if c.want != nil && !errors.Is(err, c.want) || c.want == nil && err != nil && !errors.Is(err, matte.ErrFallback) {
			t.Errorf("budget %d for %d: %v, want %v", c.budget, need, err, c.want)
		}
		if r := ctl.Stats().Reserved; r != 0 {
			t.Errorf("budget %d: %d bytes still reserved after the cutout", c.budget, r)
		}
		ticket.Done()
	}
}
