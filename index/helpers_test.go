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

func mustCollection(t testing.TB, dim int) *Collection {
	t.Helper()
	c, err := NewCollection(dim)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testID(i int) string { return fmt.Sprintf("v%06d", i) }

// checkInvariants verifies the parallel slices and the id map agree.
func checkInvariants(t testing.TB, c *Collection) {
	t.Helper()
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := len(c.ids)
	if len(c.meta) != n || len(c.vecs) != n*c.dim || len(c.rows) != n {
		t.Fatalf("lengths disagree: ids %d meta %d vecs %d/%d rows %d", n, len(c.meta), len(c.vecs), c.dim, len(c.rows))
	}
	for i, id := range c.ids {
		if r, ok := c.rows[id]; !ok || int(r) != i {
			t.Fatalf("rows[%q] = %d,%v; want %d", id, r, ok, i)
		}
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
