package preprocess

import (
	"bytes"
	"fmt"
	"image"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// withKernels runs f with the resampler's inner loops set to k.
func withKernels(k kernels, f func()) {
	saved := resizeKernels
	resizeKernels = k
	defer func() { resizeKernels = saved }()
	f()
}

// TestResizeKernelsMatchGo checks that the kernels in use (AVX2 where the
// CPU has it) give exactly the bytes of the Go loops: random content, the
// three filters, down- and upscales of odd sizes, sub-images with offsets
// and strides, and images large enough to be split into bands.
func TestResizeKernelsMatchGo(t *testing.T) {
	if resizeKernels.name == goKernels.name {
		t.Skip("this build runs the Go kernels only (no cgo or no AVX2): nothing to compare")
	}
	rng := rand.New(rand.NewPCG(12, 2))
	type size struct{ sw, sh, w, h int }
	sizes := []size{
		{1, 1, 1, 1}, {1, 1, 7, 5}, {2, 3, 1, 1}, {9, 9, 33, 17}, {33, 17, 9, 9},
		{987, 1481, 320, 320}, {320, 320, 987, 1481}, {480, 360, 320, 320}, {320, 320, 480, 360},
		{1152, 864, 1024, 1024}, {31, 45, 37, 2}, {640, 8, 17, 8}, {8, 640, 8, 17},
	}
	for range 12 {
		sizes = append(sizes, size{1 + rng.IntN(300), 1 + rng.IntN(300), 1 + rng.IntN(300), 1 + rng.IntN(300)})
	}
	for _, s := range sizes {
		for _, f := range []Filter{Lanczos3, Bicubic, Bilinear} {
			t.Run(fmt.Sprintf("%dx%d-%dx%d-%v", s.sw, s.sh, s.w, s.h, f), func(t *testing.T) {
				// A sub-image of a larger random picture: offsets and a
				// stride wider than the rows.
				big := image.NewNRGBA(image.Rect(0, 0, s.sw+5, s.sh+3))
				for i := range big.Pix {
					big.Pix[i] = byte(rng.Uint32())
				}
				src := big.SubImage(image.Rect(3, 2, 3+s.sw, 2+s.sh)).(*image.NRGBA)
				bigG := image.NewGray(image.Rect(0, 0, s.sw+9, s.sh+1))
				for i := range bigG.Pix {
					bigG.Pix[i] = byte(rng.Uint32())
				}
				srcG := bigG.SubImage(image.Rect(7, 1, 7+s.sw, 1+s.sh)).(*image.Gray)

				gotRGB, gotGray := ResizeRGB(src, s.w, s.h, f), ResizeGray(srcG, s.w, s.h, f)
				var wantRGB *image.NRGBA
				var wantGray *image.Gray
				withKernels(goKernels, func() { wantRGB, wantGray = ResizeRGB(src, s.w, s.h, f), ResizeGray(srcG, s.w, s.h, f) })
				if !bytes.Equal(gotRGB.Pix, wantRGB.Pix) {
					t.Errorf("RGB: %s kernels differ from Go's at %d of %d bytes", resizeKernels.name, countDiff(gotRGB.Pix, wantRGB.Pix), len(wantRGB.Pix))
				}
				if !bytes.Equal(gotGray.Pix, wantGray.Pix) {
					t.Errorf("gray: %s kernels differ from Go's at %d of %d bytes", resizeKernels.name, countDiff(gotGray.Pix, wantGray.Pix), len(wantGray.Pix))
				}
			})
		}
	}
}

// TestResizeKernelsExtremes feeds the kernels the inputs that push the
// fixed-point sums furthest (all 0, all 255, alternating 0/255 under
// Lanczos' negative lobes, where the clip to 0..255 matters).
func TestResizeKernelsExtremes(t *testing.T) {
	if resizeKernels.name == goKernels.name {
		t.Skip("this build runs the Go kernels only (no cgo or no AVX2): nothing to compare")
	}
	for _, pattern := range []func(x, y int) byte{
		func(x, y int) byte { return 0 },
		func(x, y int) byte { return 255 },
		func(x, y int) byte { return byte(255 * ((x + y) & 1)) },
		func(x, y int) byte { return byte(255 * ((x / 3) & 1)) },
	} {
		src := image.NewNRGBA(image.Rect(0, 0, 101, 77))
		srcG := image.NewGray(src.Rect)
		for y := 0; y < 77; y++ {
			for x := 0; x < 101; x++ {
				v := pattern(x, y)
				copy(src.Pix[src.PixOffset(x, y):], []byte{v, v, 255 - v, v})
				srcG.Pix[srcG.PixOffset(x, y)] = v
			}
		}
		for _, sz := range [][2]int{{40, 30}, {303, 231}, {101, 5}} {
			got, gotG := ResizeRGB(src, sz[0], sz[1], Lanczos3), ResizeGray(srcG, sz[0], sz[1], Lanczos3)
			var want *image.NRGBA
			var wantG *image.Gray
			withKernels(goKernels, func() { want, wantG = ResizeRGB(src, sz[0], sz[1], Lanczos3), ResizeGray(srcG, sz[0], sz[1], Lanczos3) })
			if !bytes.Equal(got.Pix, want.Pix) || !bytes.Equal(gotG.Pix, wantG.Pix) {
				t.Errorf("%v: %s kernels differ from Go's", sz, resizeKernels.name)
			}
		}
	}
}

func countDiff(a, b []byte) (n int) {
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// TestCoeffCache: cached weights equal freshly computed ones, concurrent
// users share one copy, and the cache stays within its memory bound.
func TestCoeffCache(t *testing.T) {
	a := cachedCoeffs(987, 320, Lanczos3)
	if b := cachedCoeffs(987, 320, Lanczos3); a != b {
		t.Error("the same size computed twice")
	}
	fresh := precomputeCoeffs(987, 320, Lanczos3)
	if a.ksize != fresh.ksize || !slices.Equal(a.bounds, fresh.bounds) || !slices.Equal(a.k, fresh.k) {
		t.Error("cached weights differ from computed ones")
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for in := 1000 + i; in < 4000; in += 8 {
				c := cachedCoeffs(in, 3*in, Bicubic)
				if len(c.bounds) != 2*3*in {
					t.Errorf("%d -> %d: %d bounds", in, 3*in, len(c.bounds))
					return
				}
			}
		})
	}
	wg.Wait()
	coeffCache.Lock()
	defer coeffCache.Unlock()
	if coeffCache.bytes > coeffCacheBytes {
		t.Errorf("cache holds %d bytes, bound %d", coeffCache.bytes, coeffCacheBytes)
	}
}

// BenchmarkResizeKernels: the rembg resizes of a 1.5 MP photo (987x1481,
// rembg's plants-1 size) with the Go loops and with the kernels in use:
//
//	go test -run '^$' -bench ResizeKernels -cpu 1 ./preprocess/
func BenchmarkResizeKernels(b *testing.B) {
	img := photoNRGBA(987, 1481)
	mask := image.NewGray(image.Rect(0, 0, 320, 320))
	copy(mask.Pix, ResizeRGB(img, 320, 320, Lanczos3).Pix) // any content
	for _, k := range []kernels{goKernels, resizeKernels} {
		b.Run(k.name+"/photo-to-320", func(b *testing.B) {
			withKernels(k, func() {
				for b.Loop() {
					ResizeRGB(img, 320, 320, Lanczos3)
				}
			})
		})
		b.Run(k.name+"/mask-to-photo", func(b *testing.B) {
			withKernels(k, func() {
				for b.Loop() {
					ResizeGray(mask, 987, 1481, Lanczos3)
				}
			})
		})
		if k.name == resizeKernels.name {
			break
		}
	}
}
