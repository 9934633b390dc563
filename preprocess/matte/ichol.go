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

// cholesky is a lower-triangular factor in compressed sparse columns:
// column j holds its rows and values at positions [start[j], end[j]), the
// diagonal first. The entries live in chunks of chunkSize, and a column
// never straddles two, so a factor grows without copying (a doubling slice
// would briefly hold the factor twice over) and every column is one plain
// slice.
type cholesky struct {
	start, end []int64
	rows       [][]int32
	vals       [][]float64
	entries    int64 // entries written; chunk tails left empty are not counted
}

const (
	chunkBits = 20
	chunkSize = 1 << chunkBits
	chunkMask = chunkSize - 1
)

// column returns column j's rows and values.
func (l *cholesky) column(j int) ([]int32, []float64) {
	s, e := l.start[j], l.end[j]
	c, o := s>>chunkBits, s&chunkMask
	return l.rows[c][o : o+e-s], l.vals[c][o : o+e-s]
}

// reserve returns the position where a column of up to n entries starts,
// at pos or, when it would not fit in pos's chunk, at the next chunk's
// start, allocating chunks as needed.
func (l *cholesky) reserve(pos int64, n int) int64 {
	if pos&chunkMask+int64(n) > chunkSize {
		pos = (pos>>chunkBits + 1) << chunkBits
	}
	for int64(len(l.rows)) <= pos>>chunkBits {
		l.rows = append(l.rows, make([]int32, chunkSize))
		l.vals = append(l.vals, make([]float64, chunkSize))
	}
	return pos
}

// factor is pymatting's ichol: a left-looking incomplete Cholesky
// factorisation that drops entries whose magnitude is at most 1e-4 (their
// square is still subtracted from the diagonal), retried with growing
// diagonal shifts while a pivot is not positive. maxNNZ bounds the factor's
// size; beyond it factor gives up with errFillIn. It returns the factor
// and the shift that worked.
func (s *system) factor(ctx context.Context, maxNNZ int64) (*cholesky, float64, error) {
	n := s.n()
	l := &cholesky{start: make([]int64, n), end: make([]int64, n)}
	w := &icholWork{
		next: make([]int64, n), list: make([]int32, n), acc: make([]float64, n),
		marked: make([]bool, n), nz: make([]int32, 0, 64), diag: make([]float64, n),
	}
	for _, shift := range icholShifts {
		ok, err := s.tryFactor(ctx, l, w, shift, maxNNZ)
		if err != nil {
			return nil, 0, err
		}
		if ok {
			return l, shift, nil
		}
	}
	return nil, 0, fmt.Errorf("%w even with a diagonal shift of %g", errIndefinite, icholShifts[len(icholShifts)-1])
}

// icholWork is the factorisation's work space (named as in pymatting).
type icholWork struct {
	next   []int64   // s: next entry of column k still to use
	list   []int32   // l: linked lists of columns by their next row
	acc    []float64 // a: the column being computed
	marked []bool    // b: acc[i] is in use
	nz     []int32   // c: the rows in use
	diag   []float64 // d: the diagonal as it is updated
}

// tryFactor is one attempt with one shift (a failed attempt's chunks and
// work space are reused); ok is false when a pivot was not positive.
func (s *system) tryFactor(ctx context.Context, l *cholesky, w *icholWork, shift float64, maxNNZ int64) (ok bool, err error) {
	n := s.n()
	next, list, acc, marked, nz, diag := w.next, w.list, w.acc, w.marked, w.nz[:0], w.diag
	clear(acc)
	clear(marked)
	var pos int64 // where the next column goes
	for j := range n {
		list[j] = -1
		diag[j] = shift + s.upper[stored*j]
	}
	l.entries = 0
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
			k0, k1, k2 := next[k], l.end[k], list[k]
			c, o := k0>>chunkBits, k0&chunkMask
			rows, vals := l.rows[c][o:o+k1-k0], l.vals[c][o:o+k1-k0]
			ljk := vals[0]
			if len(rows) > 1 {
				next[k] = k0 + 1
				i := rows[1]
				list[k] = list[i]
				list[i] = k
				for idx, i := range rows[1:] {
					acc[i] -= vals[1+idx] * ljk
					mark(i)
				}
			}
			k = k2
		}
		if diag[j] <= 0 {
			return false, nil
		}
		if l.entries+1+int64(len(nz)) > maxNNZ {
			return false, errFillIn
		}
		dj := math.Sqrt(diag[j])
		diag[j] = dj
		pos = l.reserve(pos, 1+len(nz))
		c, o := pos>>chunkBits, pos&chunkMask
		rows, vals := l.rows[c][o:], l.vals[c][o:]
		rows[0], vals[0] = int32(j), dj
		m := 1
		slices.Sort(nz)
		for _, i := range nz {
			lij := acc[i] / dj
			diag[i] -= lij * lij
			if math.Abs(lij) > icholDiscard {
				rows[m], vals[m] = i, lij
				m++
			}
			acc[i] = 0
			marked[i] = false
		}
		nz = nz[:0]
		l.start[j], l.end[j] = pos, pos+int64(m)
		next[j] = pos + 1
		pos += int64(m)
		l.entries += int64(m)
		if m > 1 {
			i := rows[1]
			list[j] = list[i]
			list[i] = int32(j)
		}
	}
	return true, nil
}

// solve applies the preconditioner in place: x = (L L^T)^-1 x, by forward
// then backward substitution.
func (l *cholesky) solve(x []float64) {
	n := len(l.start)
	for j := range n {
		rows, vals := l.column(j)
		t := x[j] / vals[0]
		x[j] = t
		for k, i := range rows[1:] {
			x[i] -= vals[1+k] * t
		}
	}
	for i := n - 1; i >= 0; i-- {
		rows, vals := l.column(i)
		s := x[i]
		for k, j := range rows[1:] {
			s -= vals[1+k] * x[j]
		}
		x[i] = s / vals[0]
	}
}
