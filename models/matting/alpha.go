package matting

import (
	"context"
	"errors"
	"fmt"
	"image"

	membudget "github.com/imgserve/imgserve/internal/budget"
	"github.com/imgserve/imgserve/preprocess/matte"
)

// Alpha matting (rembg's a=true) costs far more than the model that made
// the mask: on this project's 2-core machine about 0.4 s and 60 MB at 1
// MP, 11 s and 0.6 GB at 12 MP (bench/README.md). Each request's working
// memory is estimated from its trimap before anything is allocated: one
// that needs more than MaxBytes is refused (413); otherwise it reserves
// that memory from the server's one memory budget (internal/budget), which
// refuses at once (429) when the requests in flight hold too much of it.
// There is no queue of its own.

// AlphaLimits bound one alpha matting.
type AlphaLimits struct {
	// MaxBytes is the working memory one alpha matting may use, as
	// matte.Estimate counts it.
	MaxBytes int64
	// MaxErode bounds rembg's ae (the erosion's side in pixels).
	MaxErode int
}

// DefaultAlphaLimits: 2 GiB for one request (a 12 MP photo needs 0.6 GB),
// erosion up to 1000 pixels.
var DefaultAlphaLimits = AlphaLimits{MaxBytes: 2 << 30, MaxErode: 1000}

// ErrAlphaTooLarge: alpha matting would need more than MaxBytes.
var ErrAlphaTooLarge = errors.New("alpha matting needs more memory than allowed")

// AlphaMatter runs rembg's alpha matting within AlphaLimits.
type AlphaMatter struct {
	limits AlphaLimits
}

// NewAlphaMatter applies l, its zero fields taking the defaults.
func NewAlphaMatter(l AlphaLimits) *AlphaMatter {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultAlphaLimits.MaxBytes
	}
	if l.MaxErode <= 0 {
		l.MaxErode = DefaultAlphaLimits.MaxErode
	}
	return &AlphaMatter{limits: l}
}

// Limits are the limits in force.
func (a *AlphaMatter) Limits() AlphaLimits { return a.limits }

// AlphaStats describe one alpha matting's solver.
type AlphaStats struct {
	matte.Stats
}

// Cutout is rembg's alpha_matting_cutout of img by mask. It returns an
// error wrapping matte.ErrFallback where rembg would return the plain
// cutout instead; ErrAlphaTooLarge when the limits do not allow it; the
// memory budget's refusal when the server is full; the context's error
// when it ends first.
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
	// The server's one memory budget: refused at once (429) when the
	// requests in flight hold too much of it.
	if err := membudget.Reserve(ctx, need); err != nil {
		return nil, st, err
	}
	defer membudget.Release(ctx, need)
	out, ms, err := matte.Cutout(ctx, img, trimap)
	st.Stats = ms
	return out, st, err
}
