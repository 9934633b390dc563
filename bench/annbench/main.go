// Command annbench measures imgserve's vector index on files written by
// bench/ann/run.py: build time, memory per vector, and queries per second
// against recall@k on one thread, for a list of beam widths (ef). It prints
// one JSON object per line. With -gen-clip it instead writes vectors made by
// the synthetic CLIP towers (see bench/ann/README.md).
//
//	go run ./bench/annbench -base base.f32 -queries queries.f32 -truth truth.i32 \
//	    -dim 512 -storage int8 -m 16 -efc 100 -ef 16,32,64,128
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imgserve/imgserve/index"
)

func main() {
	var (
		base, queries, truth   string
		dim, m, efc, k, builds int
		storage, efList, label string
		repeats                int
		genClip                string
		genN                   int
	)
	flag.StringVar(&base, "base", "", "base vectors: float32 little-endian, dim per row")
	flag.StringVar(&queries, "queries", "", "query vectors, same format")
	flag.StringVar(&truth, "truth", "", "exact top-k row numbers per query: int32, k per row")
	flag.IntVar(&dim, "dim", 512, "dimension")
	flag.IntVar(&m, "m", 16, "HNSW M")
	flag.IntVar(&efc, "efc", 100, "HNSW ef_construction")
	flag.IntVar(&k, "k", 10, "k of recall@k (the truth file's row length)")
	flag.IntVar(&builds, "threads", runtime.NumCPU(), "goroutines inserting during the build")
	flag.StringVar(&storage, "storage", "int8", "float32 or int8")
	flag.StringVar(&efList, "ef", "16,24,32,48,64,96,128,192,256", "beam widths to measure")
	flag.IntVar(&repeats, "repeats", 3, "query passes per ef; the best and the spread are reported")
	flag.StringVar(&label, "label", "", "dataset label for the output")
	flag.StringVar(&genClip, "gen-clip", "", "write synthetic-CLIP-tower vectors to this file prefix instead")
	flag.IntVar(&genN, "n", 100000, "with -gen-clip: how many base vectors")
	flag.Parse()
	if genClip != "" {
		if err := generateCLIP(genClip, genN); err != nil {
			fail(err)
		}
		return
	}

	qs, err := readF32(queries, dim)
	if err != nil {
		fail(err)
	}
	gt, err := readI32(truth, k)
	if err != nil {
		fail(err)
	}
	c, err := index.NewCollectionParams(dim, index.Params{Index: index.IndexHNSW, Storage: storage, M: m, EfConstruction: efc})
	if err != nil {
		fail(err)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	n, buildSecs, err := build(c, base, dim, builds)
	if err != nil {
		fail(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	heapPerVec := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	emit(map[string]any{
		"engine": "imgserve", "label": label, "storage": storage, "n": n, "dim": dim, "m": m, "efc": efc,
		"build_s": buildSecs, "build_threads": builds, "bytes_per_vector": heapPerVec, "peak_rss_mib": peakRSS(),
	})

	runtime.GOMAXPROCS(1) // queries on one thread, as hnswlib's are measured
	for _, f := range strings.Split(efList, ",") {
		ef, err := strconv.Atoi(f)
		if err != nil {
			fail(err)
		}
		var qps []float64
		var recall float64
		for range repeats {
			hits := 0
			start := time.Now()
			for i, q := range qs {
				res, err := c.SearchWith(q, k, index.SearchOptions{EfSearch: ef})
				if err != nil {
					fail(err)
				}
				for _, h := range res {
					row, _ := strconv.Atoi(h.ID)
					for _, want := range gt[i] {
						if int32(row) == want {
							hits++
							break
						}
					}
				}
			}
			qps = append(qps, float64(len(qs))/time.Since(start).Seconds())
			recall = float64(hits) / float64(len(qs)*k)
		}
		lo, hi := qps[0], qps[0]
		for _, x := range qps {
			lo, hi = min(lo, x), max(hi, x)
		}
		emit(map[string]any{"engine": "imgserve", "label": label, "storage": storage, "ef": ef,
			"recall": recall, "qps": hi, "qps_min": lo, "threads": 1})
	}
}

// build inserts the base file's rows with ids "0", "1", ... from several
// goroutines, reading the file in chunks so the float32 copy is never
// whole in memory.
func build(c *index.Collection, path string, dim, threads int) (int, float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	st, _ := f.Stat()
	n := int(st.Size() / int64(4*dim))
	c.Grow(n)
	r := bufio.NewReaderSize(f, 1<<22)
	const chunk = 8192
	buf := make([]byte, 4*dim*chunk)
	start := time.Now()
	var next atomic.Int64
	var done atomic.Int64
	for lo := 0; lo < n; lo += chunk {
		cnt := min(chunk, n-lo)
		if _, err := io.ReadFull(r, buf[:4*dim*cnt]); err != nil {
			return 0, 0, err
		}
		vecs := make([]float32, dim*cnt)
		for i := range vecs {
			vecs[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
		}
		next.Store(0)
		var wg sync.WaitGroup
		for range threads {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= cnt {
						return
					}
					if err := c.Upsert(strconv.Itoa(lo+i), vecs[i*dim:(i+1)*dim], nil); err != nil {
						fail(err)
					}
				}
			})
		}
		wg.Wait()
		if d := done.Add(int64(cnt)); d%(100*chunk) < chunk {
			fmt.Fprintf(os.Stderr, "annbench: %d/%d inserted, %.0fs\n", d, n, time.Since(start).Seconds())
		}
	}
	return n, time.Since(start).Seconds(), nil
}

func readF32(path string, dim int) ([][]float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	n := len(b) / (4 * dim)
	out := make([][]float32, n)
	for i := range out {
		v := make([]float32, dim)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*(i*dim+j):]))
		}
		out[i] = v
	}
	return out, nil
}

func readI32(path string, k int) ([][]int32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	n := len(b) / (4 * k)
	out := make([][]int32, n)
	for i := range out {
		out[i] = make([]int32, k)
		for j := range k {
			out[i][j] = int32(binary.LittleEndian.Uint32(b[4*(i*k+j):]))
		}
	}
	return out, nil
}

// peakRSS is the process's high-water resident set (VmHWM), in MiB.
func peakRSS() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "annbench:", err)
	os.Exit(1)
}
