package index

import (
	"math"
	"slices"
	"testing"
)

type refHit struct {
	row   int
	score float64
}

// TestExactTopKMatchesBruteForce compares Search with a float64 brute force
// over 100k random 512-dimensional vectors (40k under -race, which slows
// the scan about tenfold; that still exceeds parallelMinRows, so the
// sharded path is what is tested either way).
func TestExactTopKMatchesBruteForce(t *testing.T) {
	const dim = 512
	n := 100_000
	if raceEnabled {
		n = 40_000
	}
	if testing.Short() {
		n = 40_000
	}
	rng := newRand(8)
	raw := gaussian(rng, make([]float32, n*dim))
	c := mustCollection(t, dim)
	c.Grow(n)
	norms := make([]float64, n)
	rowOf := make(map[string]int, n)
	for i := range n {
		v := raw[i*dim : (i+1)*dim]
		if err := c.Upsert(testID(i), v, nil); err != nil {
			t.Fatal(err)
		}
		rowOf[testID(i)] = i
		for _, x := range v {
			norms[i] += float64(x) * float64(x)
		}
		norms[i] = math.Sqrt(norms[i])
	}

	// Random directions (top scores around 0.2, tightly packed), perturbed
	// copies of stored vectors (a clear winner, as in a real reverse image
	// search) and a negated stored vector (its own row comes last).
	var queries [][]float32
	for range 3 {
		queries = append(queries, gaussian(rng, make([]float32, dim)))
	}
	for _, row := range []int{17, n - 1} {
		q := gaussian(rng, make([]float32, dim))
		for j := range q {
			q[j] = raw[row*dim+j] + 0.3*q[j]
		}
		queries = append(queries, q)
	}
	neg := make([]float32, dim)
	for j := range neg {
		neg[j] = -raw[12345*dim+j]
	}
	queries = append(queries, neg)

	var maxErr float64
	swaps := 0
	for qi, q := range queries {
		var qn float64
		for _, x := range q {
			qn += float64(x) * float64(x)
		}
		qn = math.Sqrt(qn)
		ref := make([]refHit, n)
		for i := range n {
			var s float64
			for j, x := range raw[i*dim : (i+1)*dim] {
				s += float64(q[j]) * float64(x)
			}
			ref[i] = refHit{i, s / (qn * norms[i])}
		}
		slices.SortFunc(ref, func(a, b refHit) int {
			if a.score != b.score {
				if a.score > b.score {
					return -1
				}
				return 1
			}
			return a.row - b.row // ids are zero-padded, so row order is id order
		})
		byRow := make([]float64, n)
		for _, r := range ref {
			byRow[r.row] = r.score
		}
		refScore := func(id string) float64 {
			row, ok := rowOf[id]
			if !ok {
				t.Fatalf("query %d: unknown id %s", qi, id)
			}
			return byRow[row]
		}

		var top100 []Hit
		for _, k := range []int{100, 10, 1} {
			hits, err := c.Search(q, k)
			if err != nil {
				t.Fatal(err)
			}
			if len(hits) != k {
				t.Fatalf("query %d k=%d: %d hits", qi, k, len(hits))
			}
			if k == 100 {
				top100 = hits
			} else if !slices.EqualFunc(hits, top100[:k], func(a, b Hit) bool { return a.ID == b.ID && a.Score == b.Score }) {
				// Same scan, same tie-breaks: a smaller k must be a prefix.
				t.Fatalf("query %d: k=%d result is not a prefix of k=100", qi, k)
			}
			seen := map[string]bool{}
			for i, h := range hits {
				if seen[h.ID] {
					t.Fatalf("query %d k=%d: duplicate id %s", qi, k, h.ID)
				}
				seen[h.ID] = true
				want := ref[i]
				got := refScore(h.ID)
				// Same id in the same place, or a different id whose true
				// score is within 1e-6 of the reference at this rank: a
				// swap float32 rounding cannot be blamed for otherwise.
				if h.ID != testID(want.row) {
					swaps++
				}
				if h.ID != testID(want.row) && math.Abs(got-want.score) > 1e-6 {
					t.Fatalf("query %d k=%d rank %d: got %s (true score %.9f), want %s (%.9f)",
						qi, k, i, h.ID, got, testID(want.row), want.score)
				}
				e := math.Abs(float64(h.Score) - got)
				maxErr = max(maxErr, e)
				if e > 1e-6 {
					t.Fatalf("query %d k=%d rank %d (%s): score %.9f, float64 %.9f", qi, k, i, h.ID, h.Score, got)
				}
			}
		}
		switch qi {
		case 3, 4:
			if top100[0].ID != testID([]int{17, n - 1}[qi-3]) {
				t.Errorf("query %d: near-duplicate query did not find its source first: %v", qi, top100[0])
			}
		}
	}
	t.Logf("%d rows, %d queries: max |float32 score - float64 score| = %.3g, %d near-tie swaps", n, len(queries), maxErr, swaps)
}
