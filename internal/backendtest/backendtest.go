// Package backendtest is the conformance test of index.Backend: the same
// checks run against the in-process store (memory and durable) and against
// PostgreSQL with pgvector (index/pgstore).
package backendtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/imgserve/imgserve/index"
)

// Run checks the collection API of the backends open returns (a fresh,
// empty one per call).
func Run(t *testing.T, open func(t *testing.T) index.Backend) {
	ctx := context.Background()
	t.Run("lifecycle", func(t *testing.T) {
		b := open(t)
		if list, err := b.List(ctx); err != nil || len(list) != 0 {
			t.Fatalf("empty List: %v %v", list, err)
		}
		if _, err := b.Info(ctx, "photos"); !errors.Is(err, index.ErrNoCollection) {
			t.Fatalf("Info of a missing collection: %v", err)
		}
		info, err := b.Upsert(ctx, "photos", index.Item{ID: "a", Vector: []float32{3, 0, 0, 4}, Metadata: json.RawMessage(`{"file": "a.jpg"}`)})
		if err != nil || info.Count != 1 || info.Dimension != 4 || info.Params.Index != index.IndexHNSW {
			t.Fatalf("first Upsert: %+v %v", info, err)
		}
		mustUpsert(t, b, "photos", "b", []float32{0, 1, 0, 0}, nil)
		mustUpsert(t, b, "photos", "c", []float32{0, 0, 1, 0}, json.RawMessage(`[1,2]`))
		// Replacing keeps the count and changes the vector.
		if info := mustUpsert(t, b, "photos", "b", []float32{0.6, 0, 0, 0.8}, json.RawMessage(`"x"`)); info.Count != 3 {
			t.Fatalf("count after replace: %d", info.Count)
		}
		for _, exact := range []bool{false, true} {
			hits, err := b.Search(ctx, "photos", []float32{0.6, 0, 0, 0.8}, 10, index.SearchOptions{Exact: exact})
			if err != nil || len(hits) != 3 {
				t.Fatalf("search: %v %v", hits, err)
			}
			// a and b are the same direction: a tie, ordered by id.
			if hits[0].ID != "a" || hits[1].ID != "b" || hits[2].ID != "c" || math.Abs(float64(hits[0].Score)-1) > 1e-6 ||
				string(hits[0].Metadata) != `{"file": "a.jpg"}` || string(hits[1].Metadata) != `"x"` || string(hits[2].Metadata) != `[1,2]` {
				t.Fatalf("search (exact %v): %+v", exact, hits)
			}
		}
		if info, err := b.DeleteItem(ctx, "photos", "a"); err != nil || info.Count != 2 {
			t.Fatalf("DeleteItem: %+v %v", info, err)
		}
		if _, err := b.DeleteItem(ctx, "photos", "a"); !errors.Is(err, index.ErrNotFound) || errors.Is(err, index.ErrNoCollection) {
			t.Fatalf("second DeleteItem: %v", err)
		}
		hits, _ := b.Search(ctx, "photos", []float32{1, 0, 0, 0}, 1, index.SearchOptions{})
		if len(hits) != 1 || hits[0].ID != "b" {
			t.Fatalf("search after delete: %+v", hits)
		}
		mustUpsert(t, b, "other", "z", []float32{1, 1}, nil)
		list, err := b.List(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "other" || list[1].Name != "photos" || list[1].Count != 2 {
			t.Fatalf("List: %+v %v", list, err)
		}
		if err := b.Drop(ctx, "photos"); err != nil {
			t.Fatal(err)
		}
		if err := b.Drop(ctx, "photos"); !errors.Is(err, index.ErrNoCollection) {
			t.Fatalf("second Drop: %v", err)
		}
		if _, err := b.Search(ctx, "photos", []float32{1, 0, 0, 0}, 1, index.SearchOptions{}); !errors.Is(err, index.ErrNoCollection) {
			t.Fatalf("search of a dropped collection: %v", err)
		}
		// The name is free again, for another dimension.
		if info := mustUpsert(t, b, "photos", "n", []float32{1, 2, 3}, nil); info.Count != 1 || info.Dimension != 3 {
			t.Fatalf("recreated: %+v", info)
		}
	})

	t.Run("create", func(t *testing.T) {
		b := open(t)
		p := index.Params{Index: index.IndexHNSW, M: 8, EfConstruction: 40, EfSearch: 20}
		info, created, err := b.Create(ctx, "c", 16, p)
		if err != nil || !created || info.Dimension != 16 || info.Params.M != 8 || info.Params.EfSearch != 20 || info.Params.Storage != index.StorageFloat32 {
			t.Fatalf("Create: %+v %v %v", info, created, err)
		}
		if _, created, err := b.Create(ctx, "c", 16, p); err != nil || created {
			t.Fatalf("Create again, same settings: %v %v", created, err)
		}
		if _, _, err := b.Create(ctx, "c", 16, index.Params{M: 12}); !errors.Is(err, index.ErrExists) {
			t.Fatalf("Create again, other settings: %v", err)
		}
		if _, _, err := b.Create(ctx, "c", 8, p); !errors.Is(err, index.ErrDimension) {
			t.Fatalf("Create again, other dimension: %v", err)
		}
		if _, _, err := b.Create(ctx, "flat", 4, index.Params{Index: index.IndexFlat}); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []index.Params{{Index: "ivf"}, {M: 1}, {M: 1000}, {EfSearch: -1}, {Storage: "int4"}, {Index: index.IndexFlat, M: 4}} {
			if _, _, err := b.Create(ctx, "bad", 4, bad); !errors.Is(err, index.ErrParams) {
				t.Fatalf("Create with %+v: %v", bad, err)
			}
		}
		if _, err := b.Info(ctx, "bad"); !errors.Is(err, index.ErrNoCollection) {
			t.Fatalf("a refused Create left a collection: %v", err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		b := open(t)
		mustUpsert(t, b, "c", "a", []float32{1, 0, 0}, nil)
		for _, c := range []struct {
			name string
			err  error
			got  error
		}{
			{"dimension", index.ErrDimension, upsertErr(b, "c", "b", []float32{1, 2}, nil)},
			{"zero vector", index.ErrBadVector, upsertErr(b, "c", "b", []float32{0, 0, 0}, nil)},
			{"NaN", index.ErrBadVector, upsertErr(b, "c", "b", []float32{float32(math.NaN()), 0, 1}, nil)},
			{"empty id", index.ErrBadID, upsertErr(b, "c", "", []float32{1, 0, 0}, nil)},
			{"bad metadata", index.ErrMetadata, upsertErr(b, "c", "b", []float32{1, 0, 0}, json.RawMessage(`{`))},
			{"bad name", index.ErrBadName, upsertErr(b, "a/b", "b", []float32{1, 0, 0}, nil)},
			{"no collection for a bad first item", index.ErrBadVector, upsertErr(b, "new", "b", []float32{0, 0}, nil)},
		} {
			if !errors.Is(c.got, c.err) {
				t.Errorf("%s: %v, want %v", c.name, c.got, c.err)
			}
		}
		if _, err := b.Info(ctx, "new"); !errors.Is(err, index.ErrNoCollection) {
			t.Errorf("a refused first item created its collection: %v", err)
		}
		for _, k := range []int{0, -1, index.MaxK + 1} {
			if _, err := b.Search(ctx, "c", []float32{1, 0, 0}, k, index.SearchOptions{}); !errors.Is(err, index.ErrBadK) {
				t.Errorf("k=%d: %v", k, err)
			}
		}
		if _, err := b.Search(ctx, "c", []float32{1, 0}, 1, index.SearchOptions{}); !errors.Is(err, index.ErrDimension) {
			t.Errorf("query dimension: %v", err)
		}
		if _, err := b.Search(ctx, "c", []float32{1, 0, 0}, 1, index.SearchOptions{EfSearch: index.MaxEf + 1}); !errors.Is(err, index.ErrParams) {
			t.Errorf("ef_search: %v", err)
		}
		if _, err := b.DeleteItem(ctx, "nope", "a"); !errors.Is(err, index.ErrNoCollection) {
			t.Errorf("delete in a missing collection: %v", err)
		}
	})

	t.Run("recall", func(t *testing.T) {
		b := open(t)
		const n, dim = 2000, 32
		base, queries := Clustered(n, 50, dim, 1)
		if _, _, err := b.Create(ctx, "r", dim, index.Params{}); err != nil {
			t.Fatal(err)
		}
		for i, v := range base {
			mustUpsert(t, b, "r", fmt.Sprint(i), v, nil)
		}
		hit, total := 0, 0
		for _, q := range queries {
			exact, err := b.Search(ctx, "r", q, 10, index.SearchOptions{Exact: true})
			if err != nil || len(exact) != 10 {
				t.Fatal(exact, err)
			}
			// The exact search really is exact.
			want := BruteForce(base, q, 10)
			for i, h := range exact {
				if h.ID != fmt.Sprint(want[i]) {
					t.Fatalf("exact hit %d is %s, brute force says %d", i, h.ID, want[i])
				}
			}
			approx, err := b.Search(ctx, "r", q, 10, index.SearchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			hit += Overlap(exact, approx)
			total += len(exact)
		}
		if r := float64(hit) / float64(total); r < 0.95 {
			t.Errorf("recall@10 %.3f through the graph", r)
		} else {
			t.Logf("recall@10 %.3f through the graph", r)
		}
	})
}

func mustUpsert(t *testing.T, b index.Backend, col, id string, v []float32, meta json.RawMessage) index.Info {
	t.Helper()
	info, err := b.Upsert(context.Background(), col, index.Item{ID: id, Vector: v, Metadata: meta})
	if err != nil {
		t.Fatalf("Upsert %s/%s: %v", col, id, err)
	}
	return info
}

func upsertErr(b index.Backend, col, id string, v []float32, meta json.RawMessage) error {
	_, err := b.Upsert(context.Background(), col, index.Item{ID: id, Vector: v, Metadata: meta})
	return err
}

// Clustered returns n base and nq query vectors around n/50 cluster
// centres, as embeddings of photo collections are.
func Clustered(n, nq, dim int, seed uint64) ([][]float32, [][]float32) {
	rng := rand.New(rand.NewPCG(seed, 7))
	centres := make([][]float32, max(1, n/50))
	for i := range centres {
		centres[i] = make([]float32, dim)
		for j := range centres[i] {
			centres[i][j] = float32(rng.NormFloat64())
		}
	}
	gen := func(m int) [][]float32 {
		out := make([][]float32, m)
		for i := range out {
			c := centres[rng.IntN(len(centres))]
			v := make([]float32, dim)
			for j := range v {
				v[j] = c[j] + 0.5*float32(rng.NormFloat64())
			}
			out[i] = v
		}
		return out
	}
	return gen(n), gen(nq)
}

// BruteForce returns the rows of the k best cosines, in float64, ties by
// the id's string order (as the backends order them).
func BruteForce(base [][]float32, q []float32, k int) []int {
	type scored struct {
		i int
		s float64
	}
	all := make([]scored, len(base))
	norm := func(v []float32) float64 {
		var s float64
		for _, x := range v {
			s += float64(x) * float64(x)
		}
		return math.Sqrt(s)
	}
	nq := norm(q)
	for i, v := range base {
		var d float64
		for j := range v {
			d += float64(v[j]) * float64(q[j])
		}
		all[i] = scored{i, d / norm(v) / nq}
	}
	slices.SortFunc(all, func(a, b scored) int {
		if a.s != b.s {
			if a.s > b.s {
				return -1
			}
			return 1
		}
		return 0
	})
	out := make([]int, k)
	for i := range out {
		out[i] = all[i].i
	}
	return out
}

// Overlap counts the ids two results share.
func Overlap(a, b []index.Hit) int {
	n := 0
	for _, x := range a {
		for _, y := range b {
			if x.ID == y.ID {
				n++
				break
			}
		}
	}
	return n
}
