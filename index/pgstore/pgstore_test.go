package pgstore

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/imgserve/imgserve/index"
	"github.com/imgserve/imgserve/internal/backendtest"
	"github.com/imgserve/imgserve/internal/pgtest"
)

func open(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dropAll empties the database between subtests that share a server.
func dropAll(t *testing.T, s *Store) {
	t.Helper()
	list, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if err := s.Drop(context.Background(), c.Name); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBackend(t *testing.T) {
	for _, db := range pgtest.Servers(t) {
		t.Run(db.Name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) index.Backend {
				s := open(t, db.URL)
				dropAll(t, s)
				return s
			})
		})
	}
}

// TestSchemaIdempotent: opening again (another replica, a restart) finds
// the schema and the collections as they are.
func TestSchemaIdempotent(t *testing.T) {
	url := pgtest.StartPGlite(t, 8)
	a := open(t, url)
	if _, err := a.Upsert(context.Background(), "c", index.Item{ID: "x", Vector: []float32{1, 2}}); err != nil {
		t.Fatal(err)
	}
	b := open(t, url)
	if info, err := b.Info(context.Background(), "c"); err != nil || info.Count != 1 {
		t.Fatalf("second open: %+v %v", info, err)
	}
}

// TestPgvectorAgainstExactIndex: on 10k vectors, pgvector's exact top-k
// (index scans off) equals the in-process exact index, ids in order and
// scores to float32 rounding; through its HNSW index, recall@10 >= 0.95.
func TestPgvectorAgainstExactIndex(t *testing.T) {
	for _, db := range pgtest.Servers(t) {
		t.Run(db.Name, func(t *testing.T) {
			const n, dim = 10_000, 128
			ctx := context.Background()
			s := open(t, db.URL)
			dropAll(t, s)
			mem, _ := index.NewCollectionParams(dim, index.Params{Index: index.IndexFlat})
			base, queries := backendtest.Clustered(n, 50, dim, 2)
			if _, _, err := s.Create(ctx, "tenk", dim, index.Params{EfSearch: 100}); err != nil {
				t.Fatal(err)
			}
			for i, v := range base {
				id := fmt.Sprintf("%05d", i)
				if _, err := s.Upsert(ctx, "tenk", index.Item{ID: id, Vector: v}); err != nil {
					t.Fatal(err)
				}
				if err := mem.Upsert(id, v, nil); err != nil {
					t.Fatal(err)
				}
			}
			hit, total := 0, 0
			for qi, q := range queries {
				want, _ := mem.Search(q, 10)
				got, err := s.Search(ctx, "tenk", q, 10, index.SearchOptions{Exact: true})
				if err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if got[i].ID != want[i].ID || abs(got[i].Score-want[i].Score) > 2e-6 {
						t.Fatalf("query %d rank %d: pgvector %s %.7f, index %s %.7f", qi, i, got[i].ID, got[i].Score, want[i].ID, want[i].Score)
					}
				}
				approx, err := s.Search(ctx, "tenk", q, 10, index.SearchOptions{})
				if err != nil {
					t.Fatal(err)
				}
				hit += backendtest.Overlap(want, approx)
				total += len(want)
			}
			r := float64(hit) / float64(total)
			t.Logf("pgvector HNSW recall@10 %.3f (ef_search 100) on %d x %d", r, n, dim)
			if r < 0.95 {
				t.Errorf("pgvector HNSW recall@10 %.3f < 0.95", r)
			}
		})
	}
}

func abs(x float32) float32 { return max(x, -x) }

func TestLimits(t *testing.T) {
	url := pgtest.StartPGlite(t, 8)
	s, err := Open(context.Background(), url, Options{Limits: index.Limits{MaxCollections: 1, MaxItems: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, id := range []string{"a", "b", "b"} {
		if _, err := s.Upsert(ctx, "c", index.Item{ID: id, Vector: []float32{1, 2}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Upsert(ctx, "c", index.Item{ID: "c", Vector: []float32{1, 2}}); !errors.Is(err, index.ErrLimit) {
		t.Fatalf("third item: %v", err)
	}
	if info, _ := s.Info(ctx, "c"); info.Count != 2 {
		t.Fatalf("count after a refused item: %d", info.Count)
	}
	if _, err := s.Upsert(ctx, "d", index.Item{ID: "a", Vector: []float32{1, 2}}); !errors.Is(err, index.ErrLimit) {
		t.Fatalf("second collection: %v", err)
	}
}
