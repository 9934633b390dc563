// Command loadgen drives a KServe v2 server (imgserve, or Triton) with
// concurrent infer requests, over HTTP (binary tensors or JSON) or gRPC (raw
// contents), and reports latency percentiles and throughput. With
// -raw-model it first measures a direct session.Run loop on the same
// machine, so server throughput can be stated as a ratio of raw throughput
// from one run.
//
//	go run ./bench/loadgen -model u2netp -c 1,4,16 -d 20s \
//	    -raw-model .imgserve/models/u2netp.onnx -raw-batch 1,2,4
//	go run ./bench/loadgen -protocols http,grpc -grpc-addr 127.0.0.1:8081 ...
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
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/paths"
	pb "github.com/imgserve/imgserve/server/kserve/inferencepb"
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
	grpcAddr     string
	protocols    []string
	rawEach      bool
}

func main() {
	var c config
	var conc, batches, protocols string
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
	flag.StringVar(&c.grpcAddr, "grpc-addr", "127.0.0.1:8081", "the server's KServe v2 gRPC address, for -protocols grpc")
	flag.StringVar(&protocols, "protocols", "http", "comma-separated: http (binary tensors, or JSON with -json) and grpc (raw contents); at each concurrency level each runs in turn")
	flag.BoolVar(&c.rawEach, "raw-each", false, "measure the best raw setting again right before each row, and compare the row with that (on a shared, noisy machine the load drifts between rows)")
	flag.Parse()
	c.protocols = strings.Split(protocols, ",")
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
	var rawAgain *rawBench
	if c.rawModel != "" {
		var err error
		if raw, rawAgain, err = rawBaseline(c); err != nil {
			return err
		}
		defer rawAgain.close()
	}
	senders, err := makeSenders(c)
	if err != nil {
		return err
	}
	if c.rawEach && rawAgain != nil {
		fmt.Printf("\nbefore each row, the best raw setting runs again for %s; \"vs raw\" is against that\n", c.duration/2)
	}
	fmt.Printf("%-9s %-11s %8s %7s %10s %9s %9s %9s %9s %s\n", "protocol", "concurrency", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "raw/s", "vs raw")
	for _, n := range c.concurrency {
		for _, snd := range senders {
			if c.rawEach && rawAgain != nil {
				if raw, err = rawAgain.rate(c.duration / 2); err != nil {
					return err
				}
			}
			send, closeClient := snd.newClient(n)
			res := load(c, n, send, closeClient)
			ratio, rawRate := "", ""
			if raw > 0 {
				ratio, rawRate = fmt.Sprintf("%.2f", res.throughput/raw), fmt.Sprintf("%.2f", raw)
			}
			fmt.Printf("%-9s %-11d %8d %7d %10.2f %9.1f %9.1f %9.1f %9s %s\n", snd.name, n, len(res.latencies), res.errors, res.throughput,
				ms(res.percentile(0.50)), ms(res.percentile(0.95)), ms(res.percentile(0.99)), rawRate, ratio)
			if st := res.stages.String(); st != "" {
				fmt.Printf("  server stages, mean ms: %s\n", st)
			}
			if res.firstErr != nil {
				fmt.Printf("  first error: %v\n", res.firstErr)
			}
		}
	}
	return nil
}

// A sender is one protocol's way of sending the request: newClient makes
// the client for n concurrent callers and returns the call they share.
type sender struct {
	name      string
	newClient func(n int) (send func(context.Context) (string, error), closeClient func())
}

func makeSenders(c config) ([]sender, error) {
	if c.image != "" {
		target := c.url + c.path
		body, err := os.ReadFile(c.image)
		if err != nil {
			return nil, err
		}
		fmt.Printf("\nPOST %s, request %d bytes (image)\n", target, len(body))
		return []sender{httpSender("image", target, body, http.Header{"Content-Type": {"application/octet-stream"}})}, nil
	}
	inputs, err := requestInputs(c)
	if err != nil {
		return nil, err
	}
	var out []sender
	for _, p := range c.protocols {
		switch p {
		case "http":
			target := c.url + "/v2/models/" + c.model + "/infer"
			body, header, err := httpRequest(c, inputs)
			if err != nil {
				return nil, err
			}
			kind := map[bool]string{true: "JSON", false: "binary tensors"}[c.jsonRequests]
			fmt.Printf("\nhttp: POST %s, request %d bytes (%s)\n", target, len(body), kind)
			out = append(out, httpSender(map[bool]string{true: "http-json", false: "http"}[c.jsonRequests], target, body, header))
		case "grpc":
			req := grpcRequest(c, inputs)
			fmt.Printf("\ngrpc: ModelInfer on %s, %d bytes of raw input contents\n", c.grpcAddr, len(bytes.Join(req.RawInputContents, nil)))
			out = append(out, grpcSender(c.grpcAddr, req))
		default:
			return nil, fmt.Errorf("unknown protocol %q: want http or grpc", p)
		}
	}
	return out, nil
}

func httpSender(name, url string, body []byte, header http.Header) sender {
	return sender{name: name, newClient: func(n int) (func(context.Context) (string, error), func()) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
		return func(ctx context.Context) (string, error) {
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
		}, client.CloseIdleConnections
	}}
}

// grpcSender shares one connection among the callers, as gRPC clients
// usually do: each call is an HTTP/2 stream on it.
func grpcSender(addr string, req *pb.ModelInferRequest) sender {
	return sender{name: "grpc", newClient: func(int) (func(context.Context) (string, error), func()) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
		if err != nil {
			return func(context.Context) (string, error) { return "", err }, func() {}
		}
		client := pb.NewGRPCInferenceServiceClient(conn)
		return func(ctx context.Context) (string, error) {
			_, err := client.ModelInfer(ctx, req)
			return "", err
		}, func() { conn.Close() }
	}}
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

// requestInput is one input of the request, the same for every protocol.
type requestInput struct {
	name  string
	shape []int64
	data  []float32
}

// requestInputs reads the model's metadata and makes one random input
// for each of its inputs.
func requestInputs(c config) ([]requestInput, error) {
	resp, err := http.Get(c.url + "/v2/models/" + c.model)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var meta struct {
		Inputs []tensorMeta `json:"inputs"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("model metadata: %d %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, err
	}
	rng := requestRNG()
	var inputs []requestInput
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
			return nil, fmt.Errorf("input %s: loadgen makes FP32 inputs only, not %s", in.Name, in.Datatype)
		}
		inputs = append(inputs, requestInput{name: in.Name, shape: shape, data: randomValues(rng, n)})
	}
	return inputs, nil
}

func float32Bytes(data []float32) []byte {
	blob := make([]byte, 0, 4*len(data))
	for _, f := range data {
		blob = binary.LittleEndian.AppendUint32(blob, math.Float32bits(f))
	}
	return blob
}

// httpRequest is the request in KServe v2's JSON, or with the binary-tensor
// extension (binary outputs too).
func httpRequest(c config, inputs []requestInput) ([]byte, http.Header, error) {
	var ins []map[string]any
	var blobs [][]byte
	for _, in := range inputs {
		m := map[string]any{"name": in.name, "shape": in.shape, "datatype": "FP32"}
		if c.jsonRequests {
			m["data"] = in.data
		} else {
			blob := float32Bytes(in.data)
			m["parameters"] = map[string]any{"binary_data_size": len(blob)}
			blobs = append(blobs, blob)
		}
		ins = append(ins, m)
	}
	req := map[string]any{"inputs": ins}
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

// grpcRequest is the same request over gRPC, with raw input contents; the
// outputs come back as raw contents, as over HTTP's binary extension.
func grpcRequest(c config, inputs []requestInput) *pb.ModelInferRequest {
	req := &pb.ModelInferRequest{ModelName: c.model}
	for _, in := range inputs {
		req.Inputs = append(req.Inputs, &pb.ModelInferRequest_InferInputTensor{Name: in.name, Datatype: "FP32", Shape: in.shape})
		req.RawInputContents = append(req.RawInputContents, float32Bytes(in.data))
	}
	return req
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
func load(c config, n int, send func(context.Context) (string, error), closeClient func()) result {
	defer closeClient()
	from := time.Now().Add(c.warmup)
	to := from.Add(c.duration)
	// The window's end cancels the calls still in flight. It is not a
	// deadline: gRPC would send a deadline to the server, which would then
	// drop the last queued requests early and answer errors fast, in a loop.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := time.AfterFunc(time.Until(to), cancel)
	defer stop.Stop()
	var mu sync.Mutex
	var res result
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				timing, err := send(ctx)
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

// rawBench is the raw baseline's best setting, kept loaded so that it can
// be measured again next to each server measurement.
type rawBench struct {
	rt             *inference.Runtime
	sess           *inference.Session
	batch, streams int
}

func (r *rawBench) rate(d time.Duration) (float64, error) {
	return rawRate(r.sess, r.batch, r.streams, d)
}

func (r *rawBench) close() {
	r.sess.Close()
	r.rt.Close()
}

// rawBaseline measures session.Run throughput (items per second) for each
// batch size, with one stream on all cores and with one stream per core, and
// returns the best, and that setting loaded. The batch dimension is made
// dynamic where needed.
func rawBaseline(c config) (float64, *rawBench, error) {
	model, err := os.ReadFile(c.rawModel)
	if err != nil {
		return 0, nil, err
	}
	rt, err := inference.NewRuntime(c.ortLib, inference.Device{})
	if err != nil {
		return 0, nil, err
	}
	cores := runtime.NumCPU()
	// The graph the server runs (models.Registry does the same at load).
	model, resizes, _ := rt.RewriteResizes(model, filepath.Dir(c.rawModel))
	fmt.Printf("\nraw session.Run baseline on %s (%d Resize nodes rewritten)\n%-6s %-8s %-8s %10s\n", c.rawModel, resizes, "batch", "streams", "threads", "items/s")
	best := 0.0
	bench := &rawBench{rt: rt}
	for _, streams := range []int{1, cores} {
		threads := max(1, cores/streams)
		sess, mode, note, err := rt.NewBatchedSession(model, inference.SessionOptions{IntraOpThreads: threads}, true)
		if err != nil {
			bench.close()
			return 0, nil, err
		}
		kept := false
		for _, batch := range c.rawBatches {
			if batch > 1 && mode == inference.BatchFixed {
				fmt.Printf("%-6d skipped: the model does not batch (%s)\n", batch, note)
				continue
			}
			rate, err := rawRate(sess, batch, streams, c.duration/2)
			if err != nil {
				sess.Close()
				bench.close()
				return 0, nil, err
			}
			fmt.Printf("%-6d %-8d %-8d %10.2f\n", batch, streams, threads, rate)
			if rate > best {
				best = rate
				if bench.sess != nil && bench.sess != sess {
					bench.sess.Close()
				}
				bench.sess, bench.batch, bench.streams, kept = sess, batch, streams, true
			}
		}
		if !kept {
			sess.Close()
		}
	}
	fmt.Printf("best raw: %.2f items/s (batch %d, %d streams)\n", best, bench.batch, bench.streams)
	return best, bench, nil
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
