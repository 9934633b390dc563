package index

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

const benchDim = 512

// benchCollections caches built collections across the repeated calls the
// testing package makes to one benchmark; building 1M rows takes seconds.
var (
	benchMu   sync.Mutex
	benchCols = map[int]*Collection{}
)

func benchID(i int) string { return fmt.Sprintf("img-%012d", i) } // 16 bytes, like a short hash

func buildBench(b *testing.B, n int, grow bool) *Collection {
	c, err := NewCollectionParams(benchDim, Params{Index: IndexFlat}) // these measure the exact scan
	if err != nil {
		b.Fatal(err)
	}
	if grow {
		c.Grow(n)
	}
	rng := newRand(11)
	v := make([]float32, benchDim)
	for i := range n {
		if err := c.Upsert(benchID(i), gaussian(rng, v), nil); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

func cachedBench(b *testing.B, n int) *Collection {
	benchMu.Lock()
	defer benchMu.Unlock()
	if c := benchCols[n]; c != nil {
		return c
	}
	c := buildBench(b, n, true)
	benchCols[n] = c
	return c
}

func benchSearch(b *testing.B, n int) {
	c := cachedBench(b, n)
	rng := newRand(12)
	queries := make([][]float32, 16)
	for i := range queries {
		queries[i] = gaussian(rng, make([]float32, benchDim))
	}
	b.ReportAllocs()
	b.SetBytes(int64(n) * benchDim * 4)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := c.Search(queries[i%len(queries)], 10); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "searches/s")
}

// go test -run xxx -bench Search -benchtime 20x ./index/
func BenchmarkSearch100k(b *testing.B) { benchSearch(b, 100_000) }

// BenchmarkSearch1M needs about 2.2 GB and a few seconds to build, so it
// only runs when INDEX_BENCH_1M=1.
func BenchmarkSearch1M(b *testing.B) {
	if os.Getenv("INDEX_BENCH_1M") == "" {
		b.Skip("set INDEX_BENCH_1M=1 to run (builds 1M x 512 vectors, ~2.2 GB)")
	}
	benchSearch(b, 1_000_000)
}

func BenchmarkUpsert(b *testing.B) {
	rng := newRand(13)
	vecs := make([][]float32, 1024)
	for i := range vecs {
		vecs[i] = gaussian(rng, make([]float32, benchDim))
	}
	// New ids: the collection is replaced every 100k rows to bound memory.
	b.Run("insert", func(b *testing.B) {
		c := mustCollection(b, benchDim)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if i%100_000 == 0 && i > 0 {
				b.StopTimer()
				c = mustCollection(b, benchDim)
				b.StartTimer()
			}
			if err := c.Upsert(benchID(i), vecs[i%len(vecs)], nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Existing ids: overwrite in place.
	b.Run("replace", func(b *testing.B) {
		c := mustCollection(b, benchDim)
		ids := make([]string, 10_000)
		for i := range ids {
			ids[i] = benchID(i)
			_ = c.Upsert(ids[i], vecs[i%len(vecs)], nil)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := c.Upsert(ids[i%len(ids)], vecs[(i+1)%len(vecs)], nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBytesPerVector reports live heap per stored item for 100k items
// of dim 512 with 16-byte ids and no metadata: the 2048 bytes of vector plus
// id string, slice headers and the id map. "grown" pre-sizes with Grow,
// "appended" pays append's spare capacity (which depends on where n falls
// relative to the growth steps). The build is measured once; the timed loop
// is empty, so only the custom metrics mean anything.
func BenchmarkBytesPerVector(b *testing.B) {
	const n = 100_000
	for _, grow := range []bool{true, false} {
		name := map[bool]string{true: "grown", false: "appended"}[grow]
		b.Run(name, func(b *testing.B) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			c := buildBench(b, n, grow)
			runtime.GC()
			runtime.ReadMemStats(&after)
			runtime.KeepAlive(c)
			perVec := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
			for b.Loop() {
			}
			b.ReportMetric(perVec, "bytes/vector")
			b.ReportMetric(perVec-4*benchDim, "overhead-bytes/vector")
		})
	}
}

// BenchmarkSnapshot100k writes and reloads 100k x 512 (about 206 MB).
func BenchmarkSnapshot100k(b *testing.B) {
	s := NewStore()
	s.cols["clip"] = cachedBench(b, 100_000)
	path := filepath.Join(b.TempDir(), "index.snap")
	if err := s.Snapshot(path); err != nil {
		b.Fatal(err)
	}
	b.Run("write", func(b *testing.B) {
		for b.Loop() {
			if err := s.Snapshot(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			if _, err := LoadSnapshot(path); err != nil {
				b.Fatal(err)
			}
		}
	})
}
