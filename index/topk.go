package index

import (
	"math"
	"sync/atomic"
)

// cand is a scored row. Rows are int32 to keep a candidate in 8 bytes; a
// collection refuses to grow past math.MaxInt32 rows.
type cand struct {
	score float32
	row   int32
}

// topK keeps the k best candidates seen so far in a min-heap whose root is
// the worst of them, so a new candidate costs one comparison when it does
// not qualify and O(log k) when it does. It never allocates after newTopK.
//
// Order: higher score first; equal scores are broken by ascending id, which
// (unlike the row number) does not change when rows move on delete, so the
// same collection contents always give the same answer.
type topK struct {
	k   int
	h   []cand
	ids []string // the collection's ids, for tie-breaks
	// min is the score a candidate must reach to be considered: -Inf until
	// the heap is full, then the root's score. Kept in a field so the scan
	// loop can reject most rows without touching the heap.
	min float32
}

func newTopK(k int, ids []string) *topK {
	return &topK{k: k, h: make([]cand, 0, k), ids: ids, min: float32(math.Inf(-1))}
}

// worse reports whether a ranks below b.
func (t *topK) worse(a, b cand) bool {
	if a.score != b.score {
		return a.score < b.score
	}
	return t.ids[a.row] > t.ids[b.row]
}

// push offers a candidate. Callers may skip it when score < t.min.
func (t *topK) push(score float32, row int32) {
	c := cand{score, row}
	if len(t.h) < t.k {
		t.h = append(t.h, c)
		t.up(len(t.h) - 1)
		if len(t.h) == t.k {
			t.min = t.h[0].score
		}
		return
	}
	if !t.worse(t.h[0], c) {
		return
	}
	t.h[0] = c
	t.down(0)
	t.min = t.h[0].score
}

func (t *topK) up(i int) {
	h := t.h
	for i > 0 {
		p := (i - 1) / 2
		if !t.worse(h[i], h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (t *topK) down(i int) {
	h := t.h
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && t.worse(h[r], h[l]) {
			m = r
		}
		if !t.worse(h[m], h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// sorted empties the heap into its own backing array, best first.
func (t *topK) sorted() []cand {
	h := t.h
	for n := len(h) - 1; n > 0; n-- {
		h[0], h[n] = h[n], h[0]
		t.h = h[:n]
		t.down(0)
	}
	t.h = h[:0]
	return h
}

// scanRows offers the live rows in [lo, hi) of vecs (row-major, dim
// columns) to t. Rows are scored four at a time whatever their state, so
// that a vector's score does not depend on its neighbours (see dot.go).
func scanRows(t *topK, q, vecs []float32, dim, lo, hi int, state []atomic.Uint32) {
	r := lo
	for ; r+4 <= hi; r += 4 {
		o := r * dim
		var s [4]float32
		s[0], s[1], s[2], s[3] = dot4(q, vecs[o:o+dim], vecs[o+dim:o+2*dim], vecs[o+2*dim:o+3*dim], vecs[o+3*dim:o+4*dim])
		for j, sc := range s {
			if sc >= t.min && state[r+j].Load() == slotLive {
				t.push(sc, int32(r+j))
			}
		}
	}
	for ; r < hi; r++ {
		x := vecs[r*dim : (r+1)*dim]
		if s, _, _, _ := dot4(q, x, x, x, x); s >= t.min && state[r].Load() == slotLive {
			t.push(s, int32(r))
		}
	}
}
