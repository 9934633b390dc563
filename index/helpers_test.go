package index

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// gaussian fills v with standard normal values: random directions, which is
// what normalised embeddings of unrelated images roughly look like.
func gaussian(rng *rand.Rand, v []float32) []float32 {
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// mustCollection returns a flat collection: most tests here are about
// exact search. The graph has its own tests (hnsw_test.go).
func mustCollection(t testing.TB, dim int) *Collection {
	t.Helper()
	return mustCollectionParams(t, dim, Params{Index: IndexFlat})
}

func mustCollectionParams(t testing.TB, dim int, p Params) *Collection {
	t.Helper()
	c, err := NewCollectionParams(dim, p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testID(i int) string { return fmt.Sprintf("v%06d", i) }

// checkInvariants verifies the slots, their states, the free list and the
// id map agree.
func checkInvariants(t testing.TB, c *Collection) {
	t.Helper()
	c.mu.RLock()
	defer c.mu.RUnlock()
	c.alloc.Lock()
	defer c.alloc.Unlock()
	used := int(c.used.Load())
	if used > len(c.ids) || len(c.meta) != len(c.ids) || len(c.state) != len(c.ids) {
		t.Fatalf("lengths disagree: used %d ids %d meta %d state %d", used, len(c.ids), len(c.meta), len(c.state))
	}
	if len(c.rows) != c.count {
		t.Fatalf("count %d, id map %d", c.count, len(c.rows))
	}
	for id, r := range c.rows {
		if int(r) >= used || c.ids[r] != id || c.state[r].Load() != slotLive {
			t.Fatalf("rows[%q] = %d: slot holds %q in state %d", id, r, c.ids[r], c.state[r].Load())
		}
	}
	live := 0
	for r := range used {
		if c.state[r].Load() == slotLive {
			live++
		}
	}
	free := map[uint32]bool{}
	for _, r := range c.free {
		if c.state[r].Load() == slotLive || free[r] {
			t.Fatalf("free slot %d is live or listed twice", r)
		}
		free[r] = true
	}
	if live != c.count || live+len(c.free) != used {
		t.Fatalf("%d live slots, %d free, %d used, count %d", live, len(c.free), used, c.count)
	}
}

// unit returns v/|v| computed in float64.
func unit64(v []float32) []float64 {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	n := math.Sqrt(ss)
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x) / n
	}
	return out
}
