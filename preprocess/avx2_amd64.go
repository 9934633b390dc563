//go:build cgo

package preprocess

// #include "avx2.h"
import "C"

// On x86-64 CPUs with AVX2, the hottest pre- and post-processing loops run
// as C with AVX2 intrinsics, 8 to 32 samples per instruction where Go does
// one, with the same integer arithmetic and so the same bytes
// (TestResizeKernelsMatchGo, TestCutoutPNGKernelMatchesGo):
//   - the resampler's three inner loops (resize_avx2.h): a 1.5 MP photo to
//     320x320 and the mask back take about a sixth of the Go loops' time;
//   - the cutout PNG's compositing and Up filter (composite_avx2.h), about
//     two fifths of the encoder's time in Go.
//
// Without cgo or AVX2 the Go loops run. bench/README.md (issue 12) has the
// measurements.
func init() {
	if C.imgserve_has_avx2() != 0 {
		resizeKernels = avx2Kernels
		cutoutBand = cutoutBandAVX2
	}
}
