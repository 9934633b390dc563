package matting

import (
	"context"
	"fmt"
	"image"
	"math"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/preprocess"
)

// ClothCategories are u2net_cloth_seg's garment classes, in the order rembg
// returns their masks; class 0 is the background.
var ClothCategories = []string{"upper", "lower", "full"}

// clothMasks is rembg's u2net_cloth_seg session: the class of each pixel
// (argmax of log_softmax over the first output's four channels), as an
// 8-bit image resized with Lanczos to img's size, then one mask per class
// asked for.
func (p *Pipeline) clothMasks(ctx context.Context, img *image.NRGBA, ex Extras) ([]*image.Gray, Timings, error) {
	var t Timings
	classes := ClothCategories
	if ex.ClothCategory != "" {
		ok := false
		for _, c := range ClothCategories {
			ok = ok || c == ex.ClothCategory
		}
		if !ok {
			return nil, t, fmt.Errorf("%w: cloth category %q: want upper, lower or full (or none for all three)", ErrBadParameter, ex.ClothCategory)
		}
		classes = []string{ex.ClothCategory}
	}
	out, err := p.run(ctx, img, &t)
	if err != nil {
		return nil, t, err
	}
	if out.Shape[1] != 4 {
		return nil, t, fmt.Errorf("model %s: output has %d channels, u2net_cloth_seg has 4 classes", p.model.Config.Name, out.Shape[1])
	}
	start := time.Now()
	mh, mw := int(out.Shape[2]), int(out.Shape[3])
	b := img.Bounds()
	masks, err := ClothMasks(inference.Values[float32](out)[:4*mh*mw], mw, mh, b.Dx(), b.Dy(), classes)
	t.MaskResize = time.Since(start)
	return masks, t, err
}

// ClothMasks turns four planes of class logits (w x h each) into rembg's
// garment masks at outW x outH:
//
//	pred = argmax(log_softmax(logits, 1), 1)     # classes 0..3
//	mask = Image.fromarray(pred.astype("uint8")).resize(size, LANCZOS)
//	mask.putpalette(palette); mask.convert("RGB").convert("L")
//
// The palette turns the class's index into 255 and the other three into 0;
// PIL's palette is a grey ramp beyond the four entries given, so any other
// value v (none arise from Lanczos on 0..3 in practice) stays v. Note the
// Lanczos resize of class indices: where upper body (1) meets full body
// (3), the pixels in between read 2, lower body, exactly as in rembg.
func ClothMasks(logits []float32, w, h, outW, outH int, classes []string) ([]*image.Gray, error) {
	if w <= 0 || h <= 0 || len(logits) != 4*w*h {
		return nil, fmt.Errorf("%w: ClothMasks: %d values for 4 planes of %dx%d", preprocess.ErrSize, len(logits), w, h)
	}
	plane := w * h
	idx := image.NewGray(image.Rect(0, 0, w, h))
	for i := range plane {
		// scipy's log_softmax in float32: x - max, then minus log(sum(exp)).
		// Subtracting the same value may round two classes to a tie, which
		// argmax resolves to the first.
		var x [4]float32
		mx := logits[i]
		for c := range 4 {
			x[c] = logits[c*plane+i]
			mx = max(mx, x[c])
		}
		var sum float32
		for c := range 4 {
			x[c] -= mx
			sum += float32(math.Exp(float64(x[c])))
		}
		lse := float32(math.Log(float64(sum)))
		best := 0
		for c := 1; c < 4; c++ {
			if x[c]-lse > x[best]-lse {
				best = c
			}
		}
		idx.Pix[i] = byte(best)
	}
	if outW != w || outH != h {
		idx = preprocess.ResizeGray(idx, outW, outH, preprocess.Lanczos3)
	}
	masks := make([]*image.Gray, 0, len(classes))
	for _, name := range classes {
		class := byte(0)
		for i, c := range ClothCategories {
			if c == name {
				class = byte(i + 1)
			}
		}
		m := image.NewGray(idx.Rect)
		for i, v := range idx.Pix {
			switch {
			case v == class:
				m.Pix[i] = 255
			case v < 4:
				m.Pix[i] = 0
			default:
				m.Pix[i] = v
			}
		}
		masks = append(masks, m)
	}
	return masks, nil
}
