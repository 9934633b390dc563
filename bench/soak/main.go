// Command soak drives an imgserve on this machine with sustained load and
// reports how the front door holds: status counts, latency percentiles of
// the answers that succeeded, and the server's resident memory and
// goroutines over time (read from its /metrics). It talks to loopback
// addresses only and bounds its own outstanding requests, so it cannot be
// pointed at someone else's server or run away with this machine.
//
// Open loop sends at a fixed rate whatever the answers (what overload looks
// like in production); closed loop keeps -c clients each sending its next
// request when the last one answers (what finds capacity). -x N first
// measures capacity with a closed loop, then runs the open loop at N times
// it:
//
//	go run ./bench/soak -url http://127.0.0.1:18090 -image photo.jpg \
//	    -path '/v1/remove-background?model=u2netp' -x 3 -d 90s
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type config struct {
	url, path, image, contentType, key string
	mode                               string
	rate, times                        float64
	clients                            int
	duration, calibrate, sample        time.Duration
	maxOutstanding                     int
	timeout                            time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.url, "url", "http://127.0.0.1:8080", "server base URL (loopback only)")
	flag.StringVar(&c.path, "path", "/v1/remove-background?model=u2netp", "request path and query")
	flag.StringVar(&c.image, "image", "", "file sent as the body of every request (required)")
	flag.StringVar(&c.contentType, "content-type", "application/octet-stream", "Content-Type of the body")
	flag.StringVar(&c.key, "key", "", "API key, sent as Authorization: Bearer")
	flag.StringVar(&c.mode, "mode", "open", "open (fixed arrival rate) or closed (fixed clients)")
	flag.Float64Var(&c.rate, "rate", 0, "open loop: requests per second")
	flag.Float64Var(&c.times, "x", 0, "open loop at this multiple of the capacity a closed loop measures first (instead of -rate)")
	flag.IntVar(&c.clients, "c", 4, "closed loop (and calibration): concurrent clients")
	flag.DurationVar(&c.duration, "d", 90*time.Second, "how long to load")
	flag.DurationVar(&c.calibrate, "calibrate", 20*time.Second, "with -x: how long the capacity measurement runs")
	flag.DurationVar(&c.sample, "sample", 5*time.Second, "interval of the memory and goroutine samples")
	flag.IntVar(&c.maxOutstanding, "max-outstanding", 1000, "open loop: most requests in flight; arrivals past it are counted as not sent")
	flag.DurationVar(&c.timeout, "timeout", 2*time.Minute, "client timeout of one request")
	flag.Parse()
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// loopbackOnly refuses any URL whose host is not a loopback address.
func loopbackOnly(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	ips, err := net.LookupIP(host)
	if err != nil {
		return err
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("%s resolves to %s: soak only loads servers on this machine (loopback)", host, ip)
		}
	}
	return nil
}

func run(c config) error {
	if err := loopbackOnly(c.url); err != nil {
		return err
	}
	if c.image == "" {
		return errors.New("give -image, the body of every request")
	}
	body, err := os.ReadFile(c.image)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: c.timeout,
		Transport: &http.Transport{
			MaxIdleConnsPerHost: c.maxOutstanding,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		},
	}
	defer client.CloseIdleConnections()
	target := c.url + c.path
	send := func(ctx context.Context) (int, time.Duration, string, error) {
		req, _ := http.NewRequestWithContext(ctx, "POST", target, bytes.NewReader(body))
		req.Header.Set("Content-Type", c.contentType)
		if c.key != "" {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, time.Since(start), "", err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, time.Since(start), resp.Header.Get("Server-Timing"), err
	}
	fmt.Printf("machine: %d CPUs (GOMAXPROCS %d), %s/%s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("target: POST %s, body %d bytes (%s)\n", target, len(body), c.image)

	if c.mode == "open" && c.times > 0 {
		fmt.Printf("\ncalibrating: closed loop, %d clients, %v\n", c.clients, c.calibrate)
		cal := closedLoop(c.clients, c.calibrate, send)
		capacity := float64(cal.count(200)) / c.calibrate.Seconds()
		cal.print(c.calibrate)
		if capacity == 0 {
			return errors.New("no request succeeded while calibrating")
		}
		c.rate = c.times * capacity
		fmt.Printf("capacity %.2f req/s; open loop at %.1fx = %.2f req/s\n", capacity, c.times, c.rate)
	}

	sampler := startSampler(c.url, c.key, c.sample)
	var res *results
	switch c.mode {
	case "open":
		if c.rate <= 0 {
			return errors.New("open loop needs -rate or -x")
		}
		fmt.Printf("\nopen loop: %.2f req/s for %v (at most %d outstanding)\n", c.rate, c.duration, c.maxOutstanding)
		res = openLoop(c.rate, c.duration, c.maxOutstanding, send)
	case "closed":
		fmt.Printf("\nclosed loop: %d clients for %v\n", c.clients, c.duration)
		res = closedLoop(c.clients, c.duration, send)
	default:
		return fmt.Errorf("unknown -mode %q", c.mode)
	}
	samples := sampler.stop()
	res.print(c.duration)
	printSamples(samples)
	return nil
}

// results collects every answer.
type results struct {
	mu        sync.Mutex
	stages    map[string][]time.Duration // Server-Timing of the 200s
	order     []string
	status    map[int]int
	errors    map[string]int
	ok        []time.Duration // latencies of 200s
	all       []time.Duration
	notSent   int
	firstErrs []string
}

func newResults() *results {
	return &results{status: map[int]int{}, errors: map[string]int{}, stages: map[string][]time.Duration{}}
}

func (r *results) add(code int, d time.Duration, timing string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		key := err.Error()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			key = "client timeout"
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			key = "cut off at the end of the run"
		}
		r.errors[key]++
		return
	}
	r.status[code]++
	r.all = append(r.all, d)
	if code == 200 {
		r.ok = append(r.ok, d)
		// Server-Timing: "decode;dur=2.73, inference;dur=749.15, ..."
		for _, part := range strings.Split(timing, ",") {
			name, dur, ok := strings.Cut(strings.TrimSpace(part), ";dur=")
			if v, err := strconv.ParseFloat(dur, 64); ok && err == nil {
				if _, seen := r.stages[name]; !seen {
					r.order = append(r.order, name)
				}
				r.stages[name] = append(r.stages[name], time.Duration(v*float64(time.Millisecond)))
			}
		}
	}
}

func (r *results) count(code int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status[code]
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 0, 64)
}

func (r *results) print(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	slices.Sort(r.ok)
	slices.Sort(r.all)
	var codes []int
	total := 0
	for code, n := range r.status {
		codes = append(codes, code)
		total += n
	}
	sort.Ints(codes)
	var parts []string
	for _, code := range codes {
		parts = append(parts, fmt.Sprintf("%d: %d", code, r.status[code]))
	}
	for e, n := range r.errors {
		parts = append(parts, fmt.Sprintf("%s: %d", e, n))
	}
	if r.notSent > 0 {
		parts = append(parts, fmt.Sprintf("not sent (client bound): %d", r.notSent))
	}
	fmt.Printf("answers: %d (%s)\n", total, strings.Join(parts, ", "))
	fmt.Printf("200s: %.2f req/s; latency p50 %s ms, p90 %s ms, p99 %s ms, max %s ms\n",
		float64(len(r.ok))/d.Seconds(), ms(pct(r.ok, .5)), ms(pct(r.ok, .9)), ms(pct(r.ok, .99)), ms(pct(r.ok, 1)))
	fmt.Printf("all answers: p50 %s ms, p99 %s ms\n", ms(pct(r.all, .5)), ms(pct(r.all, .99)))
	if len(r.order) > 0 {
		var st []string
		for _, name := range r.order {
			d := r.stages[name]
			slices.Sort(d)
			st = append(st, fmt.Sprintf("%s %s/%s", name, ms(pct(d, .5)), ms(pct(d, .99))))
		}
		fmt.Printf("server stages of the 200s, p50/p99 ms: %s\n", strings.Join(st, ", "))
	}
}

// openLoop sends at a fixed rate for d, whatever the answers, keeping at
// most bound requests outstanding. Requests still out at the end are
// waited for (their answers count).
func openLoop(rate float64, d time.Duration, bound int, send func(context.Context) (int, time.Duration, string, error)) *results {
	res := newResults()
	interval := time.Duration(float64(time.Second) / rate)
	var outstanding atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(at))
		if outstanding.Load() >= int64(bound) {
			res.mu.Lock()
			res.notSent++
			res.mu.Unlock()
			continue
		}
		outstanding.Add(1)
		wg.Go(func() {
			defer outstanding.Add(-1)
			code, lat, timing, err := send(context.Background())
			res.add(code, lat, timing, err)
		})
	}
	wg.Wait()
	return res
}

// closedLoop runs n clients for d; requests cut off at the end do not
// count.
func closedLoop(n int, d time.Duration, send func(context.Context) (int, time.Duration, string, error)) *results {
	res := newResults()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				code, lat, timing, err := send(ctx)
				if ctx.Err() != nil {
					return
				}
				res.add(code, lat, timing, err)
			}
		})
	}
	wg.Wait()
	return res
}

// sample is the server's state at one moment, from its /metrics.
type sample struct {
	at                 time.Duration
	rssMB, goroutines  float64
	inFlight, reserved float64
	pending, wait      float64
	service            float64
}

type sampler struct {
	stopc chan struct{}
	done  chan []sample
}

func startSampler(base, key string, every time.Duration) *sampler {
	s := &sampler{stopc: make(chan struct{}), done: make(chan []sample, 1)}
	go func() {
		start := time.Now()
		var out []sample
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if m, err := scrape(base, key); err == nil {
				m.at = time.Since(start)
				out = append(out, m)
			}
			select {
			case <-s.stopc:
				s.done <- out
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() []sample {
	close(s.stopc)
	return <-s.done
}

func scrape(base, key string) (sample, error) {
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return sample{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return sample{}, err
	}
	var s sample
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch {
		case name == "process_resident_memory_bytes":
			s.rssMB = v / (1 << 20)
		case name == "go_goroutines":
			s.goroutines = v
		case name == "imgserve_admission_in_flight":
			s.inFlight = v
		case name == "imgserve_admission_reserved_bytes":
			s.reserved = v / (1 << 20)
		case strings.HasPrefix(name, "imgserve_inference_pending_requests{"):
			s.pending += v
		case strings.HasPrefix(name, "imgserve_inference_expected_queue_wait_seconds{"):
			s.wait = max(s.wait, v)
		case strings.HasPrefix(name, "imgserve_inference_service_seconds{"):
			s.service = max(s.service, v)
		}
	}
	return s, nil
}

func printSamples(ss []sample) {
	fmt.Printf("\n%8s %8s %10s %9s %12s %8s %10s %12s\n", "t (s)", "RSS MB", "goroutines", "in flight", "reserved MB", "queued", "wait (s)", "service (s)")
	for _, s := range ss {
		fmt.Printf("%8.0f %8.0f %10.0f %9.0f %12.1f %8.0f %10.2f %12.3f\n", s.at.Seconds(), s.rssMB, s.goroutines, s.inFlight, s.reserved, s.pending, s.wait, s.service)
	}
	if len(ss) >= 4 {
		// Flat means the second half looks like the first: compare the
		// highs of each half.
		half := len(ss) / 2
		hi := func(xs []sample, f func(sample) float64) float64 {
			m := 0.0
			for _, x := range xs {
				m = max(m, f(x))
			}
			return m
		}
		rss := func(s sample) float64 { return s.rssMB }
		gr := func(s sample) float64 { return s.goroutines }
		fmt.Printf("first half / second half highs: RSS %.0f / %.0f MB, goroutines %.0f / %.0f\n",
			hi(ss[:half], rss), hi(ss[half:], rss), hi(ss[:half], gr), hi(ss[half:], gr))
	}
}
