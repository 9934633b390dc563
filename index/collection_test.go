package index

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
)

func TestNewCollectionDimension(t *testing.T) {
	for _, dim := range []int{0, -1, MaxDim + 1} {
		if _, err := NewCollection(dim); !errors.Is(err, ErrDimension) {
			t.Errorf("NewCollection(%d) error = %v, want ErrDimension", dim, err)
		}
	}
	for _, dim := range []int{1, 512, MaxDim} {
		c, err := NewCollection(dim)
		if err != nil || c.Dim() != dim || c.Len() != 0 {
			t.Errorf("NewCollection(%d) = %v, %v", dim, c, err)
		}
	}
}

func TestErrors(t *testing.T) {
	c := mustCollection(t, 4)
	ok := []float32{1, 2, 3, 4}
	if err := c.Upsert("a", ok, nil); err != nil {
		t.Fatal(err)
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"upsert short vector", c.Upsert("b", []float32{1, 2, 3}, nil), ErrDimension},
		{"upsert long vector", c.Upsert("b", []float32{1, 2, 3, 4, 5}, nil), ErrDimension},
		{"upsert zero vector", c.Upsert("b", []float32{0, 0, 0, 0}, nil), ErrBadVector},
		{"upsert NaN", c.Upsert("b", []float32{1, nan, 0, 0}, nil), ErrBadVector},
		{"upsert Inf", c.Upsert("b", []float32{1, inf, 0, 0}, nil), ErrBadVector},
		{"upsert empty id", c.Upsert("", ok, nil), ErrBadID},
		{"upsert long id", c.Upsert(string(make([]byte, MaxIDBytes+1)), ok, nil), ErrBadID},
		{"upsert non-UTF-8 id", c.Upsert("\xff", ok, nil), ErrBadID},
		{"upsert big metadata", c.Upsert("b", ok, json.RawMessage(`"`+string(bytes.Repeat([]byte("x"), MaxMetadataBytes))+`"`)), ErrMetadata},
		{"upsert bad JSON", c.Upsert("b", ok, json.RawMessage(`{"a":`)), ErrMetadata},
		{"delete unknown", c.Delete("nope"), ErrNotFound},
		{"delete empty id", c.Delete(""), ErrBadID},
		{"get unknown", func() error { _, _, err := c.Get("nope"); return err }(), ErrNotFound},
		{"search k=0", func() error { _, err := c.Search(ok, 0); return err }(), ErrBadK},
		{"search k<0", func() error { _, err := c.Search(ok, -1); return err }(), ErrBadK},
		{"search k>MaxK", func() error { _, err := c.Search(ok, MaxK+1); return err }(), ErrBadK},
		{"search wrong dim", func() error { _, err := c.Search(ok[:3], 1); return err }(), ErrDimension},
		{"search zero", func() error { _, err := c.Search(make([]float32, 4), 1); return err }(), ErrBadVector},
		{"search NaN", func() error { _, err := c.Search([]float32{nan, 0, 0, 1}, 1); return err }(), ErrBadVector},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: error = %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	// Failed calls must not have changed anything.
	if c.Len() != 1 {
		t.Fatalf("Len = %d after failed upserts, want 1", c.Len())
	}
	checkInvariants(t, c)
	// The bounds themselves are accepted.
	if _, err := c.Search(ok, MaxK); err != nil {
		t.Errorf("Search(k=MaxK): %v", err)
	}
	if err := c.Upsert(string(bytes.Repeat([]byte("i"), MaxIDBytes)), ok,
		json.RawMessage(`"`+string(bytes.Repeat([]byte("x"), MaxMetadataBytes-2))+`"`)); err != nil {
		t.Errorf("Upsert at the id and metadata limits: %v", err)
	}
}

func TestSearchSmall(t *testing.T) {
	c := mustCollection(t, 3)
	hits, err := c.Search([]float32{1, 0, 0}, 5)
	if err != nil || len(hits) != 0 || hits == nil {
		t.Fatalf("empty collection: %v, %v; want empty non-nil", hits, err)
	}
	for id, v := range map[string][]float32{
		"x":  {2, 0, 0}, // normalised on insert: the scale must not matter
		"y":  {0, 5, 0},
		"xy": {1, 1, 0},
		"-x": {-1, 0, 0},
	} {
		if err := c.Upsert(id, v, nil); err != nil {
			t.Fatal(err)
		}
	}
	hits, err = c.Search([]float32{10, 0, 0}, 10) // k > Len
	if err != nil {
		t.Fatal(err)
	}
	want := []Hit{{ID: "x", Score: 1}, {ID: "xy", Score: float32(math.Sqrt2 / 2)}, {ID: "y", Score: 0}, {ID: "-x", Score: -1}}
	if len(hits) != len(want) {
		t.Fatalf("got %d hits, want %d", len(hits), len(want))
	}
	for i := range want {
		if hits[i].ID != want[i].ID || math.Abs(float64(hits[i].Score-want[i].Score)) > 1e-6 {
			t.Errorf("hit %d = %+v, want %+v", i, hits[i], want[i])
		}
	}
}

func TestUpsertReplaceDelete(t *testing.T) {
	c := mustCollection(t, 2)
	up := func(id string, v ...float32) {
		t.Helper()
		if err := c.Upsert(id, v, nil); err != nil {
			t.Fatal(err)
		}
	}
	up("a", 1, 0)
	up("b", 0, 1)
	up("c", -1, 0)
	up("d", 0, -1)
	up("b", 1, 1) // replace in place
	if c.Len() != 4 {
		t.Fatalf("Len = %d, want 4", c.Len())
	}
	if v, _, _ := c.Get("b"); math.Abs(float64(v[0])-math.Sqrt2/2) > 1e-7 || v[0] != v[1] {
		t.Fatalf("b after replace = %v", v)
	}
	// Deleting the first row moves the last one ("d") into its place.
	if err := c.Delete("a"); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, c)
	if v, _, err := c.Get("d"); err != nil || v[0] != 0 || v[1] != -1 {
		t.Fatalf("d after swap-delete = %v, %v", v, err)
	}
	if _, _, err := c.Get("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(a) after delete: %v", err)
	}
	hits, _ := c.Search([]float32{1, 0}, 10)
	if ids := hitIDs(hits); !slices.Equal(ids, []string{"b", "d", "c"}) {
		// b: 0.707, d: 0, c: -1
		t.Fatalf("search after delete = %v", ids)
	}
	// Deleting the last row needs no move.
	if err := c.Delete("d"); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, c)
	// Re-inserting a deleted id is a fresh insert.
	up("a", 1, 0)
	checkInvariants(t, c)
	if hits, _ := c.Search([]float32{1, 0}, 1); hits[0].ID != "a" {
		t.Fatalf("top hit = %v, want a", hits)
	}
}

func hitIDs(hits []Hit) []string {
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.ID
	}
	return ids
}

// TestRandomOperations checks Upsert/Delete against a plain map model,
// including that searches never return deleted ids and that freed slots
// are reused, for a flat collection and a graph.
func TestRandomOperations(t *testing.T) {
	for _, p := range []Params{{Index: IndexFlat}, {Index: IndexHNSW, M: 4, EfConstruction: 16}} {
		t.Run(p.Index, func(t *testing.T) { testRandomOperations(t, p) })
	}
}

func testRandomOperations(t *testing.T, p Params) {
	const dim = 7
	rng := newRand(4)
	c := mustCollectionParams(t, dim, p)
	model := map[string][]float32{}
	for step := range 6000 {
		id := testID(rng.IntN(2000))
		if rng.IntN(3) == 0 || step > 4500 {
			err := c.Delete(id)
			if _, ok := model[id]; ok != (err == nil) {
				t.Fatalf("step %d: Delete(%s) = %v, in model %v", step, id, err, ok)
			}
			delete(model, id)
		} else {
			v := gaussian(rng, make([]float32, dim))
			if err := c.Upsert(id, v, nil); err != nil {
				t.Fatal(err)
			}
			model[id] = v
		}
		if step%500 == 0 || step > 5990 {
			checkInvariants(t, c)
			if c.Len() != len(model) {
				t.Fatalf("step %d: Len = %d, model %d", step, c.Len(), len(model))
			}
			for id, v := range model {
				got, _, err := c.Get(id)
				if err != nil {
					t.Fatalf("step %d: Get(%s): %v", step, id, err)
				}
				for i, x := range unit64(v) {
					if math.Abs(float64(got[i])-x) > 1e-6 {
						t.Fatalf("step %d: Get(%s) = %v, want %v", step, id, got, unit64(v))
					}
				}
			}
			if len(model) > 0 {
				hits, err := c.Search(gaussian(rng, make([]float32, dim)), min(MaxK, len(model)))
				if err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				for _, h := range hits {
					if _, ok := model[h.ID]; !ok || seen[h.ID] {
						t.Fatalf("step %d: search returned deleted or duplicate id %s", step, h.ID)
					}
					seen[h.ID] = true
				}
				// A graph search need not reach every item, but nearly.
				if want := min(MaxK, len(model)); len(hits) > want || len(hits) < want*19/20 || (p.Index == IndexFlat && len(hits) != want) {
					t.Fatalf("step %d: %d hits for %d items", step, len(hits), len(model))
				}
			}
		}
	}
	// Bulk growth and mass deletion: capacity follows the size down.
	for i := range 5000 {
		if err := c.Upsert(testID(10000+i), gaussian(rng, make([]float32, dim)), nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4990 {
		if err := c.Delete(testID(10000 + i)); err != nil {
			t.Fatal(err)
		}
	}
	checkInvariants(t, c)
	// Freed slots are reused rather than new ones taken.
	peak := int(c.used.Load())
	for i := range 4000 {
		if err := c.Upsert(testID(20000+i), gaussian(rng, make([]float32, dim)), nil); err != nil {
			t.Fatal(err)
		}
	}
	checkInvariants(t, c)
	if int(c.used.Load()) != peak {
		t.Errorf("slots in use grew from %d to %d while free slots were available", peak, c.used.Load())
	}
}

func TestTiesOrderedByID(t *testing.T) {
	c := mustCollection(t, 3)
	ids := []string{"m", "c", "x", "a", "k", "b"}
	for _, id := range ids {
		if err := c.Upsert(id, []float32{1, 2, 3}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Upsert("far", []float32{-1, 0, 0}, nil); err != nil {
		t.Fatal(err)
	}
	// Move rows around so row order differs from insertion order.
	if err := c.Delete("c"); err != nil {
		t.Fatal(err)
	}
	hits, err := c.Search([]float32{1, 2, 3}, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := hitIDs(hits); !slices.Equal(got, []string{"a", "b", "k", "m"}) {
		t.Fatalf("tied hits = %v, want [a b k m]", got)
	}
	for _, h := range hits[1:] {
		if h.Score != hits[0].Score {
			t.Fatalf("equal vectors scored differently: %v", hits)
		}
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	c := mustCollection(t, 2)
	meta := json.RawMessage(`{"path":"img/cat.jpg","tags":["cat","indoor"],"w":640}`)
	vec := []float32{1, 0}
	if err := c.Upsert("cat", vec, meta); err != nil {
		t.Fatal(err)
	}
	if err := c.Upsert("plain", []float32{0, 1}, nil); err != nil {
		t.Fatal(err)
	}
	want := string(meta)
	// The collection must own its copies of caller memory.
	meta[2] = 'X'
	vec[0] = 0

	hits, err := c.Search([]float32{1, 0}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if hits[0].ID != "cat" || string(hits[0].Metadata) != want || hits[0].Score != 1 {
		t.Fatalf("hit = %s %v %s", hits[0].ID, hits[0].Score, hits[0].Metadata)
	}
	if hits[1].Metadata != nil {
		t.Fatalf("item without metadata returned %q", hits[1].Metadata)
	}
	hits[0].Metadata[2] = 'Y' // and callers own theirs
	if _, m, _ := c.Get("cat"); string(m) != want {
		t.Fatalf("Get metadata = %s, want %s", m, want)
	}
	if _, m, _ := c.Get("plain"); m != nil {
		t.Fatalf("Get metadata of plain = %q, want nil", m)
	}
	// A replace without metadata clears it.
	if err := c.Upsert("cat", []float32{1, 0}, nil); err != nil {
		t.Fatal(err)
	}
	if _, m, _ := c.Get("cat"); m != nil {
		t.Fatalf("metadata after replace = %s", m)
	}
	b, err := json.Marshal(hits[0])
	if err != nil || !bytes.Contains(b, []byte(`"metadata":{"Yath"`)) {
		t.Fatalf("Hit JSON = %s, %v", b, err)
	}
}

func TestUpsertBatch(t *testing.T) {
	c := mustCollection(t, 2)
	err := c.UpsertBatch([]Item{
		{ID: "a", Vector: []float32{1, 0}},
		{ID: "b", Vector: []float32{0, 0}}, // bad
	})
	if !errors.Is(err, ErrBadVector) || c.Len() != 0 {
		t.Fatalf("bad batch: %v, Len %d; want ErrBadVector and nothing applied", err, c.Len())
	}
	err = c.UpsertBatch([]Item{
		{ID: "a", Vector: []float32{1, 0}},
		{ID: "b", Vector: []float32{0, 1}, Metadata: json.RawMessage(`1`)},
		{ID: "a", Vector: []float32{-1, 0}}, // later wins
	})
	if err != nil || c.Len() != 2 {
		t.Fatalf("batch: %v, Len %d", err, c.Len())
	}
	if v, _, _ := c.Get("a"); v[0] != -1 {
		t.Fatalf("a = %v, want the later vector", v)
	}
	checkInvariants(t, c)
}

func TestGrowKeepsContents(t *testing.T) {
	c := mustCollection(t, 3)
	_ = c.Upsert("a", []float32{1, 2, 3}, json.RawMessage(`"m"`))
	c.Grow(1000)
	if len(c.ids) < 1001 || len(c.vecs) < 3003 {
		t.Fatalf("Grow did not reserve: ids %d vecs %d", len(c.ids), len(c.vecs))
	}
	v, m, err := c.Get("a")
	if err != nil || string(m) != `"m"` || math.Abs(float64(v[2])-3/math.Sqrt(14)) > 1e-7 {
		t.Fatalf("after Grow: %v %s %v", v, m, err)
	}
	checkInvariants(t, c)
}

// TestShardedEqualsSingle forces the parallel scan on a small collection and
// checks it gives exactly the single-goroutine answer.
func TestShardedEqualsSingle(t *testing.T) {
	const dim, n = 19, 5003 // odd sizes: shards and 4-row blocks do not align
	rng := newRand(5)
	c := mustCollection(t, dim)
	for i := range n {
		// Some duplicates so that ties cross shard boundaries.
		v := gaussian(newRand(uint64(i%4000)), make([]float32, dim))
		if err := c.Upsert(testID(i), v, nil); err != nil {
			t.Fatal(err)
		}
	}
	old := parallelMinRows
	defer func() { parallelMinRows = old }()
	for range 20 {
		q := gaussian(rng, make([]float32, dim))
		k := 1 + rng.IntN(MaxK)
		parallelMinRows = 1 << 30
		single, err := c.Search(q, k)
		if err != nil {
			t.Fatal(err)
		}
		parallelMinRows = 64
		sharded, err := c.Search(q, k)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(single, sharded, func(a, b Hit) bool { return a.ID == b.ID && a.Score == b.Score }) {
			t.Fatalf("k=%d: sharded result differs from single scan", k)
		}
	}
}

// TestConcurrentSearchUpsert is mainly for -race: readers and writers on one
// collection, with readers checking every result is well formed.
func TestConcurrentSearchUpsert(t *testing.T) {
	for _, p := range []Params{
		{Index: IndexFlat},
		{Index: IndexHNSW, M: 6, EfConstruction: 20},
		{Index: IndexHNSW, Storage: StorageInt8, M: 6, EfConstruction: 20},
	} {
		t.Run(p.Index+"-"+p.Storage, func(t *testing.T) { testConcurrentSearchUpsert(t, p) })
	}
}

func testConcurrentSearchUpsert(t *testing.T, p Params) {
	const dim, n = 16, 2000
	c := mustCollectionParams(t, dim, p)
	rng := newRand(7)
	for i := range n {
		_ = c.Upsert(testID(i), gaussian(rng, make([]float32, dim)), nil)
	}
	old := parallelMinRows
	parallelMinRows = 256 // exercise the sharded path too
	defer func() { parallelMinRows = old }()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		wg.Go(func() {
			rng := newRand(uint64(100 + w))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := testID(rng.IntN(n + 200))
				if i%3 == 0 {
					_ = c.Delete(id)
				} else if err := c.Upsert(id, gaussian(rng, make([]float32, dim)), json.RawMessage(`{"w":1}`)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var readers sync.WaitGroup
	for r := range 4 {
		readers.Go(func() {
			rng := newRand(uint64(200 + r))
			for range 200 {
				hits, err := c.Search(gaussian(rng, make([]float32, dim)), 50)
				if err != nil {
					t.Error(err)
					return
				}
				seen := map[string]bool{}
				for i, h := range hits {
					if seen[h.ID] || (i > 0 && h.Score > hits[i-1].Score) {
						t.Errorf("malformed result: %v", hits)
						return
					}
					seen[h.ID] = true
				}
				_, _, _ = c.Get(testID(rng.IntN(n)))
				_ = c.Len()
			}
		})
	}
	readers.Wait()
	close(stop)
	wg.Wait()
	checkInvariants(t, c)
}
