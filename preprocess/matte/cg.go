package matte

import (
	"context"
	"errors"
	"math"
	"runtime"
	"sync"
)

// cg's parameters, pymatting's defaults.
const (
	cgRelTol  = 1e-7
	cgMaxIter = 10000
)

// ErrNotConverged is pymatting's cg ValueError: rembg then falls back to
// the plain cutout.
var ErrNotConverged = errors.New("conjugate gradient did not converge")

// solve is pymatting's cg with the ichol preconditioner: x starts at zero
// and the loop stops when ||r|| < 1e-7 ||b||. It returns the solution and
// the number of iterations.
func (s *system) solve(ctx context.Context, pre *cholesky) ([]float64, int, error) {
	n := s.n()
	b := s.rhs
	x := make([]float64, n)
	r := make([]float64, n)
	copy(r, b) // b - A*0
	normB := norm(b)
	if normB == 0 || math.IsNaN(normB) {
		// pymatting divides 0 by 0 here and loops until maxiter: no
		// unknown pixel is connected to the foreground.
		return nil, 0, ErrNotConverged
	}
	z := make([]float64, n)
	copy(z, r)
	pre.solve(z)
	p := make([]float64, n)
	copy(p, z)
	rz := dot(r, z)
	ap := make([]float64, n)
	for it := 1; it <= cgMaxIter; it++ {
		if ctx.Err() != nil {
			return nil, it, ctx.Err()
		}
		s.mulVec(ap, p)
		alpha := rz / dot(p, ap)
		for i := range x {
			x[i] += alpha * p[i]
			r[i] -= alpha * ap[i]
		}
		if norm(r) < cgRelTol*normB {
			return x, it, nil
		}
		copy(z, r)
		pre.solve(z)
		beta := 1 / rz
		rz = dot(r, z)
		beta *= rz
		for i := range p {
			p[i] = p[i]*beta + z[i]
		}
	}
	return nil, cgMaxIter, ErrNotConverged
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func norm(a []float64) float64 { return math.Sqrt(dot(a, a)) }

// mulVec sets y = L_U x, in parallel over bands of unknowns: every row is
// a gather, its forward entries from its own storage and its backward ones
// from the neighbours'.
func (s *system) mulVec(y, x []float64) {
	n := s.n()
	bands := min(runtime.GOMAXPROCS(0), max(1, n/16384))
	var wg sync.WaitGroup
	for b := range bands {
		lo, hi := n*b/bands, n*(b+1)/bands
		wg.Go(func() { s.mulRows(y, x, lo, hi) })
	}
	wg.Wait()
}

func (s *system) mulRows(y, x []float64, lo, hi int) {
	w := s.w
	for u := lo; u < hi; u++ {
		row := s.upper[stored*u:][:stored]
		sum := row[0] * x[u]
		p := int(s.pixel[u])
		px, py := p%w, p/w
		for k, o := range forward {
			if v := row[k+1]; v != 0 {
				sum += v * x[s.index[p+o[1]*w+o[0]]]
			}
			// The mirrored entry: the neighbour behind us stores it.
			bx, by := px-o[0], py-o[1]
			if bx < 0 || by < 0 || bx >= w {
				continue
			}
			j := s.index[by*w+bx]
			if j < 0 {
				continue
			}
			if v := s.upper[stored*int(j)+k+1]; v != 0 {
				sum += v * x[j]
			}
		}
		y[u] = sum
	}
}
