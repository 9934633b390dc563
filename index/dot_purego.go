//go:build !(goexperiment.simd && amd64)

package index

// dot4 returns q·a, q·b, q·c, q·d; each row must be at least len(q) long.
func dot4(q, a, b, c, d []float32) (float32, float32, float32, float32) {
	return dot4Go(q, a, b, c, d)
}
