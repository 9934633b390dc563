package index

import (
	"slices"
	"testing"
)

func TestTopKMatchesSort(t *testing.T) {
	rng := newRand(3)
	for trial := range 200 {
		n := 1 + rng.IntN(300)
		k := 1 + rng.IntN(n+5)
		ids := make([]string, n)
		scores := make([]float32, n)
		for i := range n {
			ids[i] = testID(rng.IntN(1 << 20))
			// Few distinct values, so ties are common and the id
			// tie-break is exercised.
			scores[i] = float32(rng.IntN(8)) / 8
		}
		tk := newTopK(min(k, n), ids)
		for i, s := range scores {
			if s >= tk.min {
				tk.push(s, int32(i))
			}
		}
		got := tk.sorted()

		want := make([]cand, n)
		for i := range n {
			want[i] = cand{scores[i], int32(i)}
		}
		slices.SortStableFunc(want, func(a, b cand) int {
			if a.score != b.score {
				if a.score > b.score {
					return -1
				}
				return 1
			}
			if ids[a.row] != ids[b.row] {
				if ids[a.row] < ids[b.row] {
					return -1
				}
				return 1
			}
			return 0
		})
		want = want[:min(k, n)]
		if len(got) != len(want) {
			t.Fatalf("trial %d: got %d, want %d", trial, len(got), len(want))
		}
		for i := range want {
			// Rows with equal score and equal id are interchangeable.
			if got[i].score != want[i].score || ids[got[i].row] != ids[want[i].row] {
				t.Fatalf("trial %d pos %d: got (%v,%s), want (%v,%s)", trial, i,
					got[i].score, ids[got[i].row], want[i].score, ids[want[i].row])
			}
		}
	}
}
