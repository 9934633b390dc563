package matte

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgserve/imgserve/preprocess"
)

// BenchmarkCutout measures rembg's alpha matting of cloth-1 with its u2netp
// mask, both scaled (bicubic) to about 1 and 12 MP. Besides time it reports
// the trimap's unknown pixels, the factor's entries per column, the
// conjugate gradient iterations, the seconds of the alpha and foreground
// stages, Estimate's figure, the peak of the heap's objects during the run
// (sampled every 5 ms, above what was there before it, garbage included)
// and the peak resident memory of the process during the run above its
// resident memory before (Linux: VmHWM after resetting it through
// /proc/self/clear_refs).
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
			var peak, peakRSS uint64
			for b.Loop() {
				runtime.GC()
				debug.FreeOSMemory()
				base := liveHeap()
				rssBefore := resetPeakRSS(b)
				stop := make(chan struct{})
				sampled := make(chan uint64)
				go func() {
					var top uint64
					tick := time.NewTicker(5 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							sampled <- top
							return
						case <-tick.C:
							top = max(top, liveHeap()-min(base, liveHeap()))
						}
					}
				}()
				_, st, err := Cutout(context.Background(), im, trimap)
				close(stop)
				peak = max(peak, <-sampled)
				peakRSS = max(peakRSS, procStatus(b, "VmHWM:")-rssBefore)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(unknown), "unknown")
				b.ReportMetric(float64(st.Factor)/float64(unknown), "factor/col")
				b.ReportMetric(float64(st.Iterations), "iterations")
				b.ReportMetric(st.Alpha.Seconds(), "alpha-s")
				b.ReportMetric(st.Foreground.Seconds(), "fg-s")
			}
			b.ReportMetric(float64(est)/(1<<20), "estimate-MiB")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(peakRSS)/(1<<20), "peak-rss-MiB")
		})
	}
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// resetPeakRSS resets the kernel's peak resident memory mark and returns the
// resident memory now.
func resetPeakRSS(b *testing.B) uint64 {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatalf("resetting the peak RSS: %v", err)
	}
	return procStatus(b, "VmRSS:")
}

// procStatus reads a kB field of /proc/self/status, in bytes.
func procStatus(b *testing.B, field string) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}
