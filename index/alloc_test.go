//go:build !race

// Allocation counts differ under the race detector, so these tests build
// only without it; make test runs them in a second pass without -race.

package index

import (
	"encoding/json"
	"testing"
)

// The scan's allocations do not grow with the collection.
func TestSearchAllocations(t *testing.T) {
	const dim = 64
	rng := newRand(6)
	allocs := func(n int) float64 {
		c := mustCollection(t, dim)
		for i := range n {
			_ = c.Upsert(testID(i), gaussian(rng, make([]float32, dim)), json.RawMessage(`{"i":1}`))
		}
		q := gaussian(rng, make([]float32, dim))
		return testing.AllocsPerRun(20, func() {
			if _, err := c.Search(q, 10); err != nil {
				t.Fatal(err)
			}
		})
	}
	old := parallelMinRows
	defer func() { parallelMinRows = old }()
	parallelMinRows = 1 << 30
	small, large := allocs(100), allocs(20000)
	if small != large || large > 5 {
		t.Errorf("single scan allocations: %v at 100 rows, %v at 20000; want equal and few", small, large)
	}
	parallelMinRows = 128
	small, large = allocs(1000), allocs(20000)
	if small != large || large > 20 {
		t.Errorf("sharded scan allocations: %v at 1000 rows, %v at 20000; want equal and few", small, large)
	}
}
