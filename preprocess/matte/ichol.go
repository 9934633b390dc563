package matte

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
)

// ichol's parameters, pymatting's defaults.
const icholDiscard = 1e-4

var icholShifts = []float64{0, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 1, 10, 100, 1e3, 1e4, 1e5}

// errFillIn is ichol's max_nnz ValueError: the factor would outgrow the
// memory allowed to it.
var errFillIn = errors.New("incomplete Cholesky factor exceeds its memory bound")

// errIndefinite is ichol's other ValueError: no shift made every pivot
// positive.
var errIndefinite = errors.New("incomplete Cholesky factorisation failed: the matrix is not positive definite")

// cholesky is a lower-triangular factor in compressed sparse columns: column
// j holds rows[ptr[j]:ptr[j+1]] (the diagonal first) with values vals[...].
type cholesky struct {
	ptr  []int64
	rows []int32
	vals []float64
}

// factor is pymatting's ichol: a left-looking incomplete Cholesky
// factorisation that drops entries whose magnitude is at most 1e-4 (their
// square is still subtracted from the diagonal), retried with growing
// diagonal shifts while a pivot is not positive. maxNNZ bounds the factor's
// size; beyond it factor gives up with errFillIn.
// It returns the factor and the shift that worked.
func (s *system) factor(ctx context.Context, maxNNZ int64) (*cholesky, float64, error) {
	// The factor of a closed-form Laplacian holds 40 to 60 entries per
	// column at pymatting's drop threshold; starting near that avoids most
	// regrowth, and a failed attempt's storage is reused by the next.
	l := &cholesky{ptr: make([]int64, s.n()+1)}
	capacity := min(int64(s.n())*48, maxNNZ)
	l.rows = make([]int32, 0, capacity)
	l.vals = make([]float64, 0, capacity)
	for _, shift := range icholShifts {
		ok, err := s.tryFactor(ctx, l, shift, maxNNZ)
		if err != nil {
			return nil, 0, err
		}
		if ok {
			return l, shift, nil
		}
	}
	return nil, 0, fmt.Errorf("%w even with a diagonal shift of %g", errIndefinite, icholShifts[len(icholShifts)-1])
}

// tryFactor is one attempt with one shift; ok is false when a pivot was not
// positive.
func (s *system) tryFactor(ctx context.Context, l *cholesky, shift float64, maxNNZ int64) (ok bool, err error) {
	n := s.n()
	var (
		next   = make([]int64, n)   // s: next entry of column k still to use
		list   = make([]int32, n)   // l: linked lists of columns by next row
		acc    = make([]float64, n) // a: the column being computed
		marked = make([]bool, n)    // b
		nz     = make([]int32, 0, 64)
		diag   = make([]float64, n) // d
	)
	for j := range n {
		list[j] = -1
		diag[j] = shift + s.upper[stored*j]
	}
	l.rows, l.vals = l.rows[:0], l.vals[:0]
	l.ptr[0] = 0
	mark := func(i int32) {
		if !marked[i] {
			marked[i] = true
			nz = append(nz, i)
		}
	}
	for j := range n {
		if j%4096 == 0 && ctx.Err() != nil {
			return false, ctx.Err()
		}
		row := s.upper[stored*j:][:stored]
		for k, o := range forward {
			v := row[k+1]
			if v == 0 {
				continue
			}
			i := s.neighbour(j, o[0], o[1])
			acc[i] += v
			mark(i)
		}
		for k := list[j]; k != -1; {
			k0, k1, k2 := next[k], l.ptr[k+1], list[k]
			ljk := l.vals[k0]
			k0++
			if k0 < k1 {
				next[k] = k0
				i := l.rows[k0]
				list[k] = list[i]
				list[i] = k
				for idx := k0; idx < k1; idx++ {
					i := l.rows[idx]
					acc[i] -= l.vals[idx] * ljk
					mark(i)
				}
			}
			k = k2
		}
		if diag[j] <= 0 {
			return false, nil
		}
		if int64(len(l.rows))+1+int64(len(nz)) > maxNNZ {
			return false, errFillIn
		}
		dj := math.Sqrt(diag[j])
		diag[j] = dj
		l.vals = append(l.vals, dj)
		l.rows = append(l.rows, int32(j))
		next[j] = int64(len(l.rows))
		slices.Sort(nz)
		for _, i := range nz {
			lij := acc[i] / dj
			diag[i] -= lij * lij
			if math.Abs(lij) > icholDiscard {
				l.vals = append(l.vals, lij)
				l.rows = append(l.rows, i)
			}
			acc[i] = 0
			marked[i] = false
		}
		nz = nz[:0]
		l.ptr[j+1] = int64(len(l.rows))
		if l.ptr[j]+1 < l.ptr[j+1] {
			i := l.rows[l.ptr[j]+1]
			list[j] = list[i]
			list[i] = int32(j)
		}
	}
	return true, nil
}

// solve applies the preconditioner in place: x = (L L^T)^-1 x, by forward
// then backward substitution.
func (l *cholesky) solve(x []float64) {
	n := len(l.ptr) - 1
	for j := range n {
		k := l.ptr[j]
		t := x[j] / l.vals[k]
		x[j] = t
		for k++; k < l.ptr[j+1]; k++ {
			x[l.rows[k]] -= l.vals[k] * t
		}
	}
	for i := n - 1; i >= 0; i-- {
		s := x[i]
		for k := l.ptr[i] + 1; k < l.ptr[i+1]; k++ {
			s -= l.vals[k] * x[l.rows[k]]
		}
		x[i] = s / l.vals[l.ptr[i]]
	}
}
