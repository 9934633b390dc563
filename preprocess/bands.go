package preprocess

import (
	"runtime"

	"github.com/imgserve/imgserve/internal/recovered"
)

// A request's decoding, resizing and compositing would otherwise run on one
// core while the model it waits for runs on all of them, and on a 2-core
// machine that made pre- and post-processing ~30% of a U²-Net-p request's
// wall time (bench/README.md). Splitting an image's rows into one band per
// core conserves the work, so throughput under load stays the same, while a
// lone request's latency drops. Work below bandMinBytes stays on the
// caller's goroutine, where starting another would cost more than it saves.
const bandMinBytes = 256 << 10

// forBands calls fn on contiguous bands [lo, hi) covering [0, rows), in
// parallel when the job touches at least 2*bandMinBytes (bytes is its
// estimate). Every band's output must be disjoint from the others'.
func forBands(rows, bytes int, fn func(lo, hi int)) {
	bands := min(runtime.GOMAXPROCS(0), rows, bytes/bandMinBytes)
	if bands <= 1 {
		fn(0, rows)
		return
	}
	var wg recovered.Group
	for b := 1; b < bands; b++ {
		wg.Go(func() { fn(rows*b/bands, rows*(b+1)/bands) })
	}
	fn(0, rows/bands)
	wg.Wait()
}
