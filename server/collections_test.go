package server

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/imgserve/imgserve/index"
	"github.com/imgserve/imgserve/index/pgstore"
	"github.com/imgserve/imgserve/internal/pgtest"
	"github.com/imgserve/imgserve/internal/testmodels"
)

// backend is one way to hold the collections, for running the collection
// API tests against each: in memory, and in PostgreSQL with pgvector
// (PGlite, plus IMGSERVE_TEST_POSTGRES when set).
type backend struct {
	name string
	open func(t *testing.T) index.Backend
}

func backends(t *testing.T) []backend {
	out := []backend{{"memory", func(*testing.T) index.Backend { return index.NewStore() }}}
	for _, db := range pgtest.Servers(t) {
		out = append(out, backend{db.Name, func(t *testing.T) index.Backend {
			s, err := pgstore.Open(context.Background(), db.URL, pgstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			// A fresh database for each test that shares the server.
			list, _ := s.List(context.Background())
			for _, c := range list {
				_ = s.Drop(context.Background(), c.Name)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}})
	}
	return out
}

func withIndex(b index.Backend) func(*Options) {
	return func(o *Options) { o.Index = b }
}

func TestCollectionParams(t *testing.T) {
	for _, be := range backends(t) {
		t.Run(be.name, func(t *testing.T) {
			srv := startServer(t, clipConfig, testmodels.Dir(), withIndex(be.open(t)))
			col := srv.URL + "/v1/collections/tuned"
			var info index.Info
			call(t, "PUT", col, map[string]any{"dimension": 8, "m": 8, "ef_construction": 40, "ef_search": 16}, 201, &info)
			if info.Dimension != 8 || info.Params.M != 8 || info.Params.EfSearch != 16 || info.Params.Index != "hnsw" {
				t.Fatalf("created: %+v", info)
			}
			call(t, "PUT", col, map[string]any{"dimension": 8, "m": 8, "ef_construction": 40, "ef_search": 16}, 200, nil)
			for _, c := range []struct {
				body any
				code int
				says string
			}{
				{map[string]any{"dimension": 8, "m": 12}, 409, "conflict"},
				{map[string]any{"m": 12}, 400, "dimension"},
				{map[string]any{"dimension": 8, "index": "ivf"}, 400, "index"},
				{map[string]any{"dimension": 8, "mm": 3}, 400, "unknown field"},
				{map[string]any{"dimension": 99999}, 400, "dimension"},
			} {
				resp := call(t, "PUT", col, c.body, c.code, nil)
				if !strings.Contains(string(resp), c.says) {
					t.Errorf("%v: %s, want %q", c.body, resp, c.says)
				}
			}
			call(t, "GET", col, nil, 200, &info)
			if info.Params.EfConstruction != 40 {
				t.Fatalf("GET: %+v", info)
			}
			for i := range 50 {
				v := make([]float32, 8)
				for j := range v {
					v[j] = float32(math.Sin(float64(i*8 + j)))
				}
				call(t, "PUT", fmt.Sprintf("%s/items/i%d", col, i), map[string]any{"vector": v}, 200, nil)
			}
			q := []float32{1, 0, 0, 0, 0, 0, 0, 1}
			exact := search(t, col+"/search", map[string]any{"vector": q, "k": 5, "exact": true})
			approx := search(t, col+"/search", map[string]any{"vector": q, "k": 5, "ef_search": 50})
			if len(exact) != 5 || len(approx) != 5 || exact[0].ID != approx[0].ID {
				t.Fatalf("exact %v, approx %v", exact, approx)
			}
			for i := 1; i < len(exact); i++ {
				if exact[i].Score > exact[i-1].Score {
					t.Fatalf("exact results out of order: %v", exact)
				}
			}
			call(t, "POST", col+"/search", map[string]any{"vector": q, "ef_search": 99999}, 400, nil)
			call(t, "POST", col+"/search", map[string]any{"vector": q, "exact": "yes"}, 400, nil)
			// Form fields for multipart or query-string searches.
			code, _, resp := do(t, "POST", col+"/search?exact=maybe", map[string]string{"Content-Type": "image/png"}, encodePNG(t, generatedImages()["disc"]))
			if code != 400 || !strings.Contains(string(resp), "exact") {
				t.Errorf("exact=maybe: %d %s", code, resp)
			}
		})
	}
}

func TestCollectionLimits(t *testing.T) {
	store := index.NewStore()
	store.SetLimits(index.Limits{MaxCollections: 1, MaxItems: 2})
	srv := startServer(t, clipConfig, testmodels.Dir(), withIndex(store))
	call(t, "PUT", srv.URL+"/v1/collections/a/items/1", map[string]any{"vector": []float32{1, 0}}, 200, nil)
	call(t, "PUT", srv.URL+"/v1/collections/a/items/2", map[string]any{"vector": []float32{0, 1}}, 200, nil)
	resp := call(t, "PUT", srv.URL+"/v1/collections/a/items/3", map[string]any{"vector": []float32{1, 1}}, 409, nil)
	if !strings.Contains(string(resp), "limit_reached") || !strings.Contains(string(resp), "2 items") {
		t.Errorf("item limit: %s", resp)
	}
	call(t, "PUT", srv.URL+"/v1/collections/a/items/2", map[string]any{"vector": []float32{1, 1}}, 200, nil) // replacing is fine
	resp = call(t, "PUT", srv.URL+"/v1/collections/b/items/1", map[string]any{"vector": []float32{1, 0}}, 409, nil)
	if !strings.Contains(string(resp), "1 collections") {
		t.Errorf("collection limit: %s", resp)
	}
	call(t, "GET", srv.URL+"/v1/collections/b", nil, 404, nil)
}
