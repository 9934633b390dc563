//go:build goexperiment.simd && amd64

package index

import "simd/archsimd"

// With scalar code the 1M x 512 scan is limited by instruction throughput
// to about 0.1 s on two cores; 8-wide FMA halves that, reaching memory
// bandwidth. The experiment's API may still change, so this file only
// builds when asked for, and falls back to dot4Go on CPUs without AVX2+FMA.

var useSIMD = archsimd.X86.AVX2() && archsimd.X86.FMA()

// dot4 returns q·a, q·b, q·c, q·d; each row must be at least len(q) long.
func dot4(q, a, b, c, d []float32) (float32, float32, float32, float32) {
	if !useSIMD {
		return dot4Go(q, a, b, c, d)
	}
	// Row by row with one function, so every lane rounds alike (see dot.go).
	return dotSIMD(q, a), dotSIMD(q, b), dotSIMD(q, c), dotSIMD(q, d)
}

func dotSIMD(q, x []float32) float32 {
	m := len(q)
	n := m &^ 15
	x = x[:m]
	var s0, s1 archsimd.Float32x8
	for i := 0; i < n; i += 16 {
		s0 = archsimd.LoadFloat32x8Slice(q[i:]).MulAdd(archsimd.LoadFloat32x8Slice(x[i:]), s0)
		s1 = archsimd.LoadFloat32x8Slice(q[i+8:]).MulAdd(archsimd.LoadFloat32x8Slice(x[i+8:]), s1)
	}
	var v [8]float32
	s0.Add(s1).Store(&v)
	s := ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))
	for i := n; i < m; i++ {
		s += q[i] * x[i]
	}
	return s
}
