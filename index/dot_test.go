package index

import (
	"errors"
	"math"
	"testing"
)

func TestDot4(t *testing.T) {
	testKernel(t, dot4)
	testKernel(t, dot4Go) // the fallback, when dot4 is the SIMD kernel
}

func testKernel(t *testing.T, dot4 func(q, a, b, c, d []float32) (float32, float32, float32, float32)) {
	t.Helper()
	rng := newRand(1)
	for dim := 1; dim <= 70; dim++ {
		q := gaussian(rng, make([]float32, dim))
		rows := gaussian(rng, make([]float32, 4*dim))
		a, b, c, d := rows[:dim], rows[dim:2*dim], rows[2*dim:3*dim], rows[3*dim:]
		var s [4]float32
		s[0], s[1], s[2], s[3] = dot4(q, a, b, c, d)
		var r [4]float32
		r[0], r[1], r[2], r[3] = dot4(q, d, c, b, a)
		for i, x := range [][]float32{a, b, c, d} {
			var want, mag float64
			for j := range q {
				want += float64(q[j]) * float64(x[j])
				mag += math.Abs(float64(q[j]) * float64(x[j]))
			}
			// Sum of dim float32 roundings, each at most 2^-24 of the
			// magnitude involved.
			if tol := float64(dim+2) * 0x1p-24 * mag; math.Abs(float64(s[i])-want) > tol {
				t.Fatalf("dim %d row %d: dot4 = %v, float64 = %v (tol %g)", dim, i, s[i], want, tol)
			}
			// A row's score must not depend on its lane.
			alone, _, _, _ := dot4(q, x, x, x, x)
			if s[i] != r[3-i] || s[i] != alone {
				t.Fatalf("dim %d row %d: lanes disagree: %v %v %v", dim, i, s[i], r[3-i], alone)
			}
		}
	}
}

func TestNormalize(t *testing.T) {
	v := []float32{3, 4}
	dst := make([]float32, 2)
	if err := normalize(dst, v); err != nil {
		t.Fatal(err)
	}
	if dst[0] != 0.6 || dst[1] != 0.8 {
		t.Fatalf("normalize(3,4) = %v", dst)
	}
	// Components whose squares overflow float32 must still normalise.
	if err := normalize(dst, []float32{3e38, 3e38}); err != nil || math.Abs(float64(dst[0])-math.Sqrt2/2) > 1e-7 {
		t.Fatalf("normalize(huge) = %v, %v", dst, err)
	}
	for _, bad := range [][]float32{
		{0, 0},
		{float32(math.NaN()), 1},
		{float32(math.Inf(1)), 1},
		{1, float32(math.Inf(-1))},
	} {
		if err := normalize(dst, bad); !errors.Is(err, ErrBadVector) {
			t.Errorf("normalize(%v) error = %v, want ErrBadVector", bad, err)
		}
	}
}

// dot8 is the textbook alternative, kept for comparison in BenchmarkDot:
// one row, eight independent accumulators.
func dot8(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		x := a[i : i+8 : i+8]
		y := b[i : i+8 : i+8]
		s0 += x[0] * y[0]
		s1 += x[1] * y[1]
		s2 += x[2] * y[2]
		s3 += x[3] * y[3]
		s4 += x[4] * y[4]
		s5 += x[5] * y[5]
		s6 += x[6] * y[6]
		s7 += x[7] * y[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

var sinkF float32

// BenchmarkDot compares kernels on cache-resident data; ns/op is per row
// (512 multiply-adds) in both cases.
func BenchmarkDot(b *testing.B) {
	const dim = 512
	rng := newRand(2)
	q := gaussian(rng, make([]float32, dim))
	x := gaussian(rng, make([]float32, 4*dim))
	b.Run("dot8", func(b *testing.B) {
		for b.Loop() {
			sinkF += dot8(q, x[:dim])
		}
	})
	b.Run("dot4", func(b *testing.B) {
		for b.Loop() {
			s0, s1, s2, s3 := dot4(q, x[:dim], x[dim:2*dim], x[2*dim:3*dim], x[3*dim:])
			sinkF += s0 + s1 + s2 + s3
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(4*b.N), "ns/row")
	})
}
