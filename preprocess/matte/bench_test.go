package matte

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/imgserve/imgserve/preprocess"
)

// BenchmarkCutout measures rembg's alpha matting of cloth-1 with its u2netp
// mask, scaled (bicubic, image and mask alike) to about 1 and 12 MP.
func BenchmarkCutout(b *testing.B) {
	img := decode(b, "cloth-1.jpg")
	mask := alphaOf(decode(b, "cloth-1.u2netp.png"))
	for _, size := range []struct{ w, h int }{{816, 1252}, {2828, 4340}} {
		b.Run(fmt.Sprintf("%.0fMP", float64(size.w*size.h)/1e6), func(b *testing.B) {
			im := preprocess.ResizeRGB(img, size.w, size.h, preprocess.Bicubic)
			m := preprocess.ResizeGray(mask, size.w, size.h, preprocess.Bicubic)
			trimap, unknown, est, err := Plan(m, Defaults)
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			var before, after runtime.MemStats
			for b.Loop() {
				runtime.ReadMemStats(&before)
				start := time.Now()
				_, st, err := Cutout(context.Background(), im, trimap)
				if err != nil {
					b.Fatal(err)
				}
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(unknown), "unknown")
				b.ReportMetric(float64(st.Factor)/float64(unknown), "factor/col")
				b.ReportMetric(float64(st.Iterations), "iterations")
				b.ReportMetric(st.Alpha.Seconds(), "alpha-s")
				b.ReportMetric(st.Foreground.Seconds(), "fg-s")
				b.ReportMetric(float64(est)/(1<<20), "estimate-MiB")
				b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), "alloc-MiB")
				_ = start
			}
		})
	}
}
