package index

import (
	"fmt"
	"math"
)

// The default scan is plain Go. The gc compiler does not vectorise, so
// every multiply and add is a scalar SSE instruction, and on cache-resident
// data the limit is load and FP-port throughput (see BenchmarkDot): a
// single-row kernel with 8 independent accumulators issues two loads per
// multiply-add, while dot4 loads each query element once and uses it for
// four rows, which is about twice as fast per row. Wider blocking (8 rows)
// or more accumulators per row run out of the 15 usable XMM registers and
// the compiler spills accumulators to the stack, which is slower still.
// Over 1M x 512 vectors the scalar scan reaches about 20 GB/s on two cores,
// roughly half the memory bandwidth: with this many instructions per cache
// line the CPU cannot keep enough misses in flight. Huge pages, touch-ahead
// loads and GOAMD64=v3 (FMA) were tried and made no measurable difference.
//
// Every score, including those of the last rows of a shard that do not
// fill a block of four, comes from dot4 and all four lanes are written
// alike. That keeps a vector's score independent of its row number (which
// changes as rows move on delete) and of the shard layout: otherwise two
// kernels with different rounding, or differently fused multiply-adds when
// built with GOAMD64=v3, would make equal vectors not tie and results
// depend on insertion history.
//
// On amd64 with AVX2 and FMA, dot4 uses the assembly kernel of
// kernels_amd64.s instead (8-wide FMA), which brings the scan close to
// memory bandwidth; dot4Go remains the portable fallback.

// dot4Go returns q·a, q·b, q·c, q·d; each row must be at least len(q)
// long. It is the portable kernel behind dot4.
func dot4Go(q, a, b, c, d []float32) (float32, float32, float32, float32) {
	m := len(q)
	n := m &^ 3
	a, b, c, d = a[:m], b[:m], c[:m], d[:m]
	var sa, sb, sc, sd float32
	for i := 0; i < n; i += 4 {
		q0, q1, q2, q3 := q[i], q[i+1], q[i+2], q[i+3]
		sa += (q0*a[i] + q1*a[i+1]) + (q2*a[i+2] + q3*a[i+3])
		sb += (q0*b[i] + q1*b[i+1]) + (q2*b[i+2] + q3*b[i+3])
		sc += (q0*c[i] + q1*c[i+1]) + (q2*c[i+2] + q3*c[i+3])
		sd += (q0*d[i] + q1*d[i+1]) + (q2*d[i+2] + q3*d[i+3])
	}
	for i := n; i < m; i++ {
		sa += q[i] * a[i]
		sb += q[i] * b[i]
		sc += q[i] * c[i]
		sd += q[i] * d[i]
	}
	return sa, sb, sc, sd
}

// normalize writes v/|v| into dst (len(dst) == len(v)). The norm is summed
// in float64, where squares of float32 values cannot overflow (MaxDim of
// them stay below 1e82), so a NaN or Inf component is the only way the sum
// can end up non-finite and needs no check per element.
func normalize(dst, v []float32) error {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if math.IsNaN(ss) || math.IsInf(ss, 0) {
		for i, x := range v {
			if f := float64(x); math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("%w: component %d is %v", ErrBadVector, i, x)
			}
		}
	}
	if ss == 0 {
		return fmt.Errorf("%w: zero vector", ErrBadVector)
	}
	inv := 1 / math.Sqrt(ss)
	for i, x := range v {
		dst[i] = float32(float64(x) * inv)
	}
	return nil
}
