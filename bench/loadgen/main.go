// Command loadgen drives a KServe v2 server (imgserve, or Triton) with
// concurrent infer requests and reports latency percentiles and throughput.
// With -raw-model it first measures a direct session.Run loop on the same
// machine, so server throughput can be stated as a ratio of raw throughput
// from one run.
//
//	go run ./bench/loadgen -model u2netp -c 1,4,16 -d 20s \
//	    -raw-model .imgserve/models/u2netp.onnx -raw-batch 1,2,4
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/paths"
)

type config struct {
	url          string
	model        string
	concurrency  []int
	duration     time.Duration
	warmup       time.Duration
	rawModel     string
	rawBatches   []int
	ortLib       string
	jsonRequests bool
	image        string
	path         string
}

func main() {
	var c config
	var conc, batches string
	flag.StringVar(&c.url, "url", "http://127.0.0.1:8080", "server base URL")
	flag.StringVar(&c.model, "model", "u2netp", "model to call")
	flag.StringVar(&conc, "c", "1,4,16", "comma-separated concurrency levels")
	flag.DurationVar(&c.duration, "d", 20*time.Second, "measured duration per level")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured warm-up per level")
	flag.StringVar(&c.rawModel, "raw-model", "", "ONNX file for the raw session.Run baseline (off when empty)")
	flag.StringVar(&batches, "raw-batch", "1,2,4", "batch sizes for the raw baseline")
	flag.StringVar(&c.ortLib, "ort-lib", paths.ORTLib(paths.Home()), "ONNX Runtime library for the raw baseline")
	flag.BoolVar(&c.jsonRequests, "json", false, "send JSON tensors instead of the binary extension")
	flag.StringVar(&c.image, "image", "", "send this image file to -path instead of KServe tensors")
	flag.StringVar(&c.path, "path", "/v1/remove-background?model=u2netp", "task API path for -image")
	flag.Parse()
	var err error
	if c.concurrency, err = ints(conc); err == nil {
		c.rawBatches, err = ints(batches)
	}
	if err == nil {
		err = run(c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

type tensorMeta struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func run(c config) error {
	fmt.Printf("machine: %d CPUs (GOMAXPROCS %d), %s/%s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	raw := 0.0
	if c.rawModel != "" {
		var err error
		if raw, err = rawBaseline(c); err != nil {
			return err
		}
	}
	target := c.url + "/v2/models/" + c.model + "/infer"
	body, header, err := buildRequest(c)
	kind := map[bool]string{true: "JSON", false: "binary tensors"}[c.jsonRequests]
	if c.image != "" {
		target, kind = c.url+c.path, "image"
		body, err = os.ReadFile(c.image)
		header = http.Header{"Content-Type": {"application/octet-stream"}}
	}
	if err != nil {
		return err
	}
	fmt.Printf("\nPOST %s, request %d bytes (%s)\n", target, len(body), kind)
	fmt.Printf("%-11s %8s %7s %10s %9s %9s %9s %s\n", "concurrency", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "vs raw")
	for _, n := range c.concurrency {
		res := load(c, target, n, body, header)
		ratio := ""
		if raw > 0 {
			ratio = fmt.Sprintf("%.2f", res.throughput/raw)
		}
		fmt.Printf("%-11d %8d %7d %10.2f %9.1f %9.1f %9.1f %s\n", n, len(res.latencies), res.errors, res.throughput,
			ms(res.percentile(0.50)), ms(res.percentile(0.95)), ms(res.percentile(0.99)), ratio)
		if st := res.stages.String(); st != "" {
			fmt.Printf("  server stages, mean ms: %s\n", st)
		}
		if res.firstErr != nil {
			fmt.Printf("  first error: %v\n", res.firstErr)
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// requestRNG and randomValues make the one random input that both the
// server and the raw baseline run on, so that both do the same arithmetic.
func requestRNG() *rand.Rand { return rand.New(rand.NewPCG(1, 1)) }

func randomValues(rng *rand.Rand, n int) []float32 {
	data := make([]float32, n)
	for i := range data {
		data[i] = rng.Float32()*4 - 2
	}
	return data
}

// buildRequest reads the model's metadata and makes one random request.
func buildRequest(c config) ([]byte, http.Header, error) {
	if c.image != "" {
		return nil, nil, nil
	}
	resp, err := http.Get(c.url + "/v2/models/" + c.model)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var meta struct {
		Inputs []tensorMeta `json:"inputs"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, nil, fmt.Errorf("model metadata: %d %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, nil, err
	}
	rng := requestRNG()
	var inputs []map[string]any
	var blobs [][]byte
	for _, in := range meta.Inputs {
		shape := slices.Clone(in.Shape)
		n := 1
		for i := range shape {
			if shape[i] < 0 {
				shape[i] = 1
			}
			n *= int(shape[i])
		}
		if in.Datatype != "FP32" {
			return nil, nil, fmt.Errorf("input %s: loadgen makes FP32 inputs only, not %s", in.Name, in.Datatype)
		}
		data := randomValues(rng, n)
		m := map[string]any{"name": in.Name, "shape": shape, "datatype": in.Datatype}
		if c.jsonRequests {
			m["data"] = data
		} else {
			blob := make([]byte, 0, 4*n)
			for _, f := range data {
				blob = binary.LittleEndian.AppendUint32(blob, math.Float32bits(f))
			}
			m["parameters"] = map[string]any{"binary_data_size": len(blob)}
			blobs = append(blobs, blob)
		}
		inputs = append(inputs, m)
	}
	req := map[string]any{"inputs": inputs}
	if !c.jsonRequests {
		req["parameters"] = map[string]any{"binary_data_output": true}
	}
	js, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	h := http.Header{"Content-Type": {"application/json"}}
	body := js
	if !c.jsonRequests {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Inference-Header-Content-Length", strconv.Itoa(len(js)))
		body = bytes.Join(append([][]byte{js}, blobs...), nil)
	}
	return body, h, nil
}

type result struct {
	latencies  []time.Duration
	errors     int
	firstErr   error
	throughput float64
	stages     serverTiming // summed over the measured requests
}

// serverTiming sums the server's Server-Timing stages (ms) in the order
// they first appear.
type serverTiming struct {
	names []string
	sums  map[string]float64
	n     int
}

// add parses "decode;dur=1.2, inference;dur=30".
func (t *serverTiming) add(header string) {
	if header == "" {
		return
	}
	if t.sums == nil {
		t.sums = map[string]float64{}
	}
	t.n++
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		dur, ok := strings.CutPrefix(strings.TrimSpace(params), "dur=")
		v, err := strconv.ParseFloat(dur, 64)
		if !ok || err != nil {
			continue
		}
		if _, seen := t.sums[name]; !seen {
			t.names = append(t.names, name)
		}
		t.sums[name] += v
	}
}

// String gives each stage's mean and the share of everything that is not
// inference against inference.
func (t serverTiming) String() string {
	if t.n == 0 {
		return ""
	}
	var b strings.Builder
	other := 0.0
	for _, name := range t.names {
		fmt.Fprintf(&b, "%s %.1f, ", name, t.sums[name]/float64(t.n))
		if name != "inference" {
			other += t.sums[name]
		}
	}
	if inf := t.sums["inference"]; inf > 0 {
		fmt.Fprintf(&b, "pre+post/inference %.3f", other/inf)
	}
	return strings.TrimSuffix(b.String(), ", ")
}

func (r result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(p*float64(len(r.latencies))))]
}

// load runs n closed-loop clients: each sends its next request as soon as
// the last one answers. The clients run without a pause through the
// warm-up and the measured window, and only requests that complete inside
// the window count, so the rate is completions per second of steady state:
// neither the ramp-up nor the drain at the end (which at high concurrency
// lasts a whole queue's worth of latency) is in it.
func load(c config, url string, n int, body []byte, header http.Header) result {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
	defer client.CloseIdleConnections()
	from := time.Now().Add(c.warmup)
	to := from.Add(c.duration)
	ctx, cancel := context.WithDeadline(context.Background(), to)
	defer cancel()
	send := func() (string, error) {
		req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
		req.Header = header.Clone()
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return "", err
		}
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("status %d", resp.StatusCode)
		}
		return resp.Header.Get("Server-Timing"), nil
	}
	var mu sync.Mutex
	var res result
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				timing, err := send()
				end := time.Now()
				if end.Before(from) || ctx.Err() != nil {
					continue // warm-up, or cut off at the end of the window
				}
				mu.Lock()
				if err != nil {
					res.errors++
					if res.firstErr == nil {
						res.firstErr = err
					}
				} else {
					res.latencies = append(res.latencies, end.Sub(start))
					res.stages.add(timing)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.throughput = float64(len(res.latencies)) / c.duration.Seconds()
	slices.Sort(res.latencies)
	return res
}

// rawBaseline measures session.Run throughput (items per second) for each
// batch size, with one stream on all cores and with one stream per core, and
// returns the best. The batch dimension is made dynamic where needed.
func rawBaseline(c config) (float64, error) {
	model, err := os.ReadFile(c.rawModel)
	if err != nil {
		return 0, err
	}
	rt, err := inference.NewRuntime(c.ortLib, inference.Device{})
	if err != nil {
		return 0, err
	}
	defer rt.Close()
	cores := runtime.NumCPU()
	fmt.Printf("\nraw session.Run baseline on %s\n%-6s %-8s %-8s %10s\n", c.rawModel, "batch", "streams", "threads", "items/s")
	best := 0.0
	for _, streams := range []int{1, cores} {
		threads := max(1, cores/streams)
		sess, mode, note, err := rt.NewBatchedSession(model, inference.SessionOptions{IntraOpThreads: threads}, true)
		if err != nil {
			return 0, err
		}
		for _, batch := range c.rawBatches {
			if batch > 1 && mode == inference.BatchFixed {
				fmt.Printf("%-6d skipped: the model does not batch (%s)\n", batch, note)
				continue
			}
			rate, err := rawRate(sess, batch, streams, c.duration/2)
			if err != nil {
				sess.Close()
				return 0, err
			}
			fmt.Printf("%-6d %-8d %-8d %10.2f\n", batch, streams, threads, rate)
			best = max(best, rate)
		}
		sess.Close()
	}
	fmt.Printf("best raw: %.2f items/s\n", best)
	return best, nil
}

func rawRate(sess *inference.Session, batch, streams int, d time.Duration) (float64, error) {
	info := sess.Inputs()
	inputs := make([]inference.Tensor, len(info))
	rng := requestRNG()
	for i, in := range info {
		shape := slices.Clone(in.Shape)
		for j := range shape {
			if shape[j] < 0 {
				shape[j] = 1
			}
		}
		if in.DType != inference.FP32 {
			return 0, fmt.Errorf("input %s: loadgen makes FP32 inputs only, not %v", in.Name, in.DType)
		}
		row := 1
		for _, s := range shape[1:] {
			row *= int(s)
		}
		shape[0] = int64(batch)
		// Every row is the server's request, the same values.
		values := randomValues(rng, row)
		data := make([]float32, 0, batch*row)
		for range batch {
			data = append(data, values...)
		}
		inputs[i] = inference.NewTensor(shape, data)
	}
	if _, err := sess.Run(inputs); err != nil { // warm-up
		return 0, err
	}
	var mu sync.Mutex
	var firstErr error
	count := 0
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for s := 0; s < streams; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				_, err := sess.Run(inputs)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				count += batch
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, errors.Join(errors.New("raw run"), firstErr)
	}
	return float64(count) / time.Since(start).Seconds(), nil
}
