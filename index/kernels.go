package index

// Portable kernels, used where the assembly ones are not (see
// kernels_amd64.go). They do not round like the assembly, but one process
// only ever uses one of the two.

// dotF32Go is one lane of dot4Go, so that both round alike.
func dotF32Go(q, a []float32) float32 {
	m := len(q)
	n := m &^ 3
	a = a[:m]
	var s float32
	for i := 0; i < n; i += 4 {
		s += (q[i]*a[i] + q[i+1]*a[i+1]) + (q[i+2]*a[i+2] + q[i+3]*a[i+3])
	}
	for i := n; i < m; i++ {
		s += q[i] * a[i]
	}
	return s
}

// dot4 returns q·a, q·b, q·c, q·d; each row must be at least len(q) long.
// Every lane gives the score dotF32 gives, so an exact scan and a graph
// search agree to the bit.
func dot4(q, a, b, c, d []float32) (float32, float32, float32, float32) {
	if useAVX2 {
		return dotF32(q, a), dotF32(q, b), dotF32(q, c), dotF32(q, d)
	}
	return dot4Go(q, a, b, c, d)
}

func dotF32I8Go(q []float32, c []int8) float32 {
	n := len(q)
	c = c[:n]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= n; i += 4 {
		s0 += q[i] * float32(c[i])
		s1 += q[i+1] * float32(c[i+1])
		s2 += q[i+2] * float32(c[i+2])
		s3 += q[i+3] * float32(c[i+3])
	}
	for ; i < n; i++ {
		s0 += q[i] * float32(c[i])
	}
	return (s0 + s1) + (s2 + s3)
}

func dotI8Go(a, b []int8) int32 {
	b = b[:len(a)]
	var s int32
	for i, x := range a {
		s += int32(x) * int32(b[i])
	}
	return s
}
