package index

import (
	"math"
	"testing"
)

// The kernels against float64 sums, for lengths around every unrolling
// boundary of the assembly (32, 16, 8 and the scalar tail).
func TestKernels(t *testing.T) {
	rng := newRand(21)
	for n := 1; n <= 200; n++ {
		a := gaussian(rng, make([]float32, n))
		b := gaussian(rng, make([]float32, n))
		ca, cb := make([]int8, n), make([]int8, n)
		for i := range ca {
			ca[i], cb[i] = int8(rng.IntN(255)-127), int8(rng.IntN(255)-127)
		}
		var want, mag, wantI8, magI8 float64
		var wantII int32
		for i := range a {
			want += float64(a[i]) * float64(b[i])
			mag += math.Abs(float64(a[i]) * float64(b[i]))
			wantI8 += float64(a[i]) * float64(ca[i])
			magI8 += math.Abs(float64(a[i]) * float64(ca[i]))
			wantII += int32(ca[i]) * int32(cb[i])
		}
		tol := float64(n+2) * 0x1p-24
		if got := dotF32(a, b); math.Abs(float64(got)-want) > tol*mag {
			t.Fatalf("n=%d: dotF32 = %v, want %v", n, got, want)
		}
		if got := dotF32Go(a, b); math.Abs(float64(got)-want) > tol*mag {
			t.Fatalf("n=%d: dotF32Go = %v, want %v", n, got, want)
		}
		if got := dotF32I8(a, ca); math.Abs(float64(got)-wantI8) > tol*magI8 {
			t.Fatalf("n=%d: dotF32I8 = %v, want %v", n, got, wantI8)
		}
		if got := dotI8(ca, cb); got != wantII {
			t.Fatalf("n=%d: dotI8 = %v, want %v", n, got, wantII)
		}
		if got := dotI8Go(ca, cb); got != wantII {
			t.Fatalf("n=%d: dotI8Go = %v, want %v", n, got, wantII)
		}
		// Each score is the same whichever kernel computes it within one
		// build: dot4's lanes equal dotF32.
		s0, s1, _, _ := dot4(a, b, a, b, b)
		if s0 != dotF32(a, b) || s1 != dotF32(a, a) {
			t.Fatalf("n=%d: dot4 and dotF32 disagree", n)
		}
	}
	t.Logf("assembly kernels in use: %v", useAVX2)
}

// quantize with its residuals reproduces a unit vector to about 1/16 of an
// int8 step, and the refined score is correspondingly close.
func TestQuantize(t *testing.T) {
	rng := newRand(22)
	for _, dim := range []int{1, 3, 8, 37, 512} {
		row := make([]float32, dim)
		if err := normalize(row, gaussian(rng, make([]float32, dim))); err != nil {
			t.Fatal(err)
		}
		c := mustCollectionParams(t, dim, Params{Index: IndexFlat, Storage: StorageInt8})
		if err := c.Upsert("x", row, nil); err != nil {
			t.Fatal(err)
		}
		got, _, _ := c.Get("x")
		var m float64
		for _, x := range row {
			m = max(m, math.Abs(float64(x)))
		}
		step := m / 127
		for i := range row {
			if d := math.Abs(float64(got[i] - row[i])); d > step/32+1e-7 {
				t.Fatalf("dim %d component %d: %v decoded as %v (step %g)", dim, i, row[i], got[i], step)
			}
		}
		q := gaussian(rng, make([]float32, dim))
		var exact float64
		for i := range q {
			exact += float64(q[i]) * float64(row[i])
		}
		coarse, fine := c.score(q, 0), c.fineScore(q, 0)
		t.Logf("dim %d: exact %.6f int8 %.6f refined %.6f", dim, exact, coarse, fine)
		if math.Abs(float64(fine)-exact) > math.Abs(float64(coarse)-exact)+1e-4 || math.Abs(float64(fine)-exact) > 1e-3 {
			t.Fatalf("dim %d: refined score %v, int8 %v, exact %v", dim, fine, coarse, exact)
		}
	}
}

// go test -run '^$' -bench Kernels ./index/
func BenchmarkKernels(b *testing.B) {
	rng := newRand(23)
	const n = 512
	q, v := gaussian(rng, make([]float32, n)), gaussian(rng, make([]float32, n))
	codes, nib := make([]int8, n), make([]uint8, n/2)
	for i := range codes {
		codes[i] = int8(rng.IntN(255) - 127)
	}
	var sink float32
	b.Run("f32", func(b *testing.B) {
		for b.Loop() {
			sink += dotF32(q, v)
		}
	})
	b.Run("f32xi8", func(b *testing.B) {
		for b.Loop() {
			sink += dotF32I8(q, codes)
		}
	})
	b.Run("i8xi8", func(b *testing.B) {
		for b.Loop() {
			sink += float32(dotI8(codes, codes))
		}
	})
	b.Run("f32xnibble", func(b *testing.B) {
		for b.Loop() {
			sink += dotF32Nib(q, nib)
		}
	})
	_ = sink
}

func TestDotNibble(t *testing.T) {
	rng := newRand(24)
	for n := 1; n <= 100; n++ {
		q := gaussian(rng, make([]float32, n))
		nib := make([]uint8, residBytes(n))
		var want, mag float64
		for i := range n {
			r := rng.IntN(16) - 8
			nib[i/2] |= (uint8(int8(r)) & 0xf) << (4 * (i & 1))
			want += float64(q[i]) * float64(r)
			mag += math.Abs(float64(q[i]) * float64(r))
		}
		tol := float64(n+2) * 0x1p-24 * mag
		if got := dotF32Nib(q, nib); math.Abs(float64(got)-want) > tol {
			t.Fatalf("n=%d: dotF32Nib = %v, want %v", n, got, want)
		}
		if got := dotF32NibGo(q, nib); math.Abs(float64(got)-want) > tol {
			t.Fatalf("n=%d: dotF32NibGo = %v, want %v", n, got, want)
		}
	}
}
