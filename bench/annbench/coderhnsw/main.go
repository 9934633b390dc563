// Command coderhnsw measures github.com/coder/hnsw, the pure-Go HNSW
// library considered for imgserve's index, on bench/ann/run.py's files,
// with the same output as annbench. It is a module of its own so that
// imgserve does not depend on the library.
//
//	cd bench/annbench/coderhnsw && go run . -base ... -queries ... -truth ...
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/coder/hnsw"
)

func main() {
	var base, queries, truth, efList string
	var dim, m, k int
	flag.StringVar(&base, "base", "", "base vectors (float32, dim per row)")
	flag.StringVar(&queries, "queries", "", "query vectors")
	flag.StringVar(&truth, "truth", "", "exact top-k rows (int32, k per row)")
	flag.IntVar(&dim, "dim", 512, "dimension")
	flag.IntVar(&m, "m", 16, "M")
	flag.IntVar(&k, "k", 10, "k")
	flag.StringVar(&efList, "ef", "16,32,64,128", "beam widths")
	flag.Parse()
	b, q := readF32(base, dim), readF32(queries, dim)
	gt := readI32(truth, k)
	g := hnsw.NewGraph[int]()
	g.M = m
	g.Ml = 1 / math.Log(float64(m))
	g.Distance = hnsw.CosineDistance
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for i, v := range b {
		g.Add(hnsw.MakeNode(i, v))
	}
	build := time.Since(start).Seconds()
	b = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	emit(map[string]any{"engine": "coder-hnsw", "n": g.Len(), "m": m, "build_s": build, "build_threads": 1,
		"bytes_per_vector": float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(g.Len())})
	for _, f := range strings.Split(efList, ",") {
		ef, _ := strconv.Atoi(f)
		g.EfSearch = ef
		hits := 0
		start := time.Now()
		for i, v := range q {
			for _, n := range g.Search(v, k) {
				for _, want := range gt[i] {
					if int32(n.Key) == want {
						hits++
						break
					}
				}
			}
		}
		qps := float64(len(q)) / time.Since(start).Seconds()
		emit(map[string]any{"engine": "coder-hnsw", "ef": ef, "recall": float64(hits) / float64(len(q)*k), "qps": qps, "qps_min": qps, "threads": 1})
	}
}

func readF32(path string, dim int) [][]float32 {
	data, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	out := make([][]float32, len(data)/(4*dim))
	for i := range out {
		v := make([]float32, dim)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*(i*dim+j):]))
		}
		out[i] = v
	}
	return out
}

func readI32(path string, k int) [][]int32 {
	data, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	out := make([][]int32, len(data)/(4*k))
	for i := range out {
		out[i] = make([]int32, k)
		for j := range k {
			out[i][j] = int32(binary.LittleEndian.Uint32(data[4*(i*k+j):]))
		}
	}
	return out
}

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}
