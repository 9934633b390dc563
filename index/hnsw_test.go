package index

import (
	"fmt"
	"sync"
	"testing"
)

// clustered returns n vectors around n/100 centres: nearest neighbours
// that mean something, as in real embeddings.
func clustered(seed uint64, n, dim int) [][]float32 {
	rng := newRand(seed)
	centres := make([][]float32, max(1, n/100))
	for i := range centres {
		centres[i] = gaussian(rng, make([]float32, dim))
	}
	out := make([][]float32, n)
	for i := range out {
		c := centres[rng.IntN(len(centres))]
		v := gaussian(rng, make([]float32, dim))
		for j := range v {
			v[j] = c[j] + 0.6*v[j]
		}
		out[i] = v
	}
	return out
}

// recall is recall@k of the graph search against the exact scan.
func recall(t *testing.T, c *Collection, queries [][]float32, k int, o SearchOptions) float64 {
	t.Helper()
	hit, total := 0, 0
	for _, q := range queries {
		exact, err := c.SearchWith(q, k, SearchOptions{Exact: true})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.SearchWith(q, k, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range exact {
			for _, g := range got {
				if e.ID == g.ID {
					hit++
					break
				}
			}
		}
		total += len(exact)
	}
	return float64(hit) / float64(total)
}

func TestHNSWRecall(t *testing.T) {
	const n, dim = 8000, 48
	data := clustered(31, n+100, dim)
	base, queries := data[:n], data[n:]
	for _, storage := range []string{StorageFloat32, StorageInt8} {
		t.Run(storage, func(t *testing.T) {
			c := mustCollectionParams(t, dim, Params{Storage: storage, M: 12, EfConstruction: 64})
			// Two writers, as a bulk load over HTTP would.
			var wg sync.WaitGroup
			for w := range 2 {
				wg.Go(func() {
					for i := w; i < n; i += 2 {
						if err := c.Upsert(testID(i), base[i], nil); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			checkInvariants(t, c)
			r := recall(t, c, queries, 10, SearchOptions{EfSearch: 64})
			t.Logf("%s: recall@10 %.3f at ef 64", storage, r)
			if r < 0.95 {
				t.Errorf("recall@10 %.3f at ef 64", r)
			}
			if narrow, wide := recall(t, c, queries, 10, SearchOptions{EfSearch: 10}), recall(t, c, queries, 10, SearchOptions{EfSearch: 200}); narrow > wide || wide < r {
				t.Errorf("recall does not grow with ef: %.3f at 10, %.3f at 64, %.3f at 200", narrow, r, wide)
			}

			// Churn: delete a third, replace a third with new vectors
			// (reusing the freed slots), and the graph still finds them.
			for i := 0; i < n; i += 3 {
				if err := c.Delete(testID(i)); err != nil {
					t.Fatal(err)
				}
			}
			fresh := clustered(32, n/3, dim)
			for i, v := range fresh {
				if err := c.Upsert(fmt.Sprintf("new%05d", i), v, nil); err != nil {
					t.Fatal(err)
				}
			}
			checkInvariants(t, c)
			if used := int(c.used.Load()); used > n+n/100 {
				t.Errorf("%d slots for %d items at most: freed slots not reused", used, n)
			}
			r = recall(t, c, queries, 10, SearchOptions{EfSearch: 64})
			t.Logf("%s: recall@10 %.3f at ef 64 after churn", storage, r)
			if r < 0.9 {
				t.Errorf("recall@10 %.3f after churn", r)
			}
		})
	}
}

// An exact search of a graph collection and of a flat one agree to the
// bit, and the graph's own hits carry the same scores as the scan's.
func TestHNSWScoresMatchScan(t *testing.T) {
	const n, dim = 3000, 40
	data := clustered(33, n+20, dim)
	g := mustCollectionParams(t, dim, Params{M: 8})
	f := mustCollection(t, dim)
	for i, v := range data[:n] {
		_ = g.Upsert(testID(i), v, nil)
		_ = f.Upsert(testID(i), v, nil)
	}
	for _, q := range data[n:] {
		a, _ := g.SearchWith(q, 10, SearchOptions{Exact: true})
		b, _ := f.Search(q, 10)
		h, _ := g.SearchWith(q, 10, SearchOptions{EfSearch: 100})
		for i := range a {
			if a[i].ID != b[i].ID || a[i].Score != b[i].Score {
				t.Fatalf("exact searches differ at %d: %+v vs %+v", i, a[i], b[i])
			}
		}
		for _, x := range h {
			for _, y := range a {
				if x.ID == y.ID && x.Score != y.Score {
					t.Fatalf("%s scored %v by the graph, %v by the scan", x.ID, x.Score, y.Score)
				}
			}
		}
	}
}
