package bench

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/imgserve/imgserve/inference"
)

// Real weights of the caption decoder and the diffusion UNet cannot be
// fetched here, so their step times are estimated from below: by the time
// to read the weights once (a CPU step reads each at least once) and by a
// proxy model with the export's shapes, generated on demand.

// benchReadFloor reads n bytes once per op on every core: the memory
// bandwidth floor of one step of a model whose weights are n bytes.
func benchReadFloor(b *testing.B, n int64) {
	words := make([]uint64, n/8)
	for i := range words {
		words[i] = uint64(i)
	}
	workers := runtime.GOMAXPROCS(0)
	var sink atomic.Uint64
	b.SetBytes(n)
	for b.Loop() {
		var wg sync.WaitGroup
		for w := range workers {
			part := words[w*len(words)/workers : (w+1)*len(words)/workers]
			wg.Go(func() {
				var s0, s1, s2, s3 uint64
				for i := 0; i+3 < len(part); i += 4 {
					s0 += part[i]
					s1 += part[i+1]
					s2 += part[i+2]
					s3 += part[i+3]
				}
				sink.Add(s0 + s1 + s2 + s3)
			})
		}
		wg.Wait()
	}
}

// proxySession loads the proxy model named by the environment variable env
// on every core, or skips the benchmark, saying which script writes it.
func proxySession(b *testing.B, env, script string) *inference.Session {
	path := os.Getenv(env)
	if path == "" {
		b.Skipf("set %s to a model written by %s", env, script)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	s, err := benchRuntime.NewSession(data, inference.SessionOptions{IntraOpThreads: runtime.NumCPU()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
