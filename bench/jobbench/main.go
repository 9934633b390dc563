// Command jobbench measures batch jobs against single requests on a
// running imgserve: the throughput of one job of N images against the same
// images sent as single requests at the best of several concurrencies, and
// the median latency of single requests while that job runs against idle.
//
//	go run ./bench/jobbench -url http://127.0.0.1:8080 -n 200 -image car-1.jpg -c 1,2,4,8
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "server base URL")
	n := flag.Int("n", 200, "images in the job (and single requests per concurrency level)")
	imagePath := flag.String("image", "", "image file sent n times (required)")
	model := flag.String("model", "u2netp", "background removal model")
	conc := flag.String("c", "1,2,4,8", "concurrency levels of the single requests")
	probes := flag.Int("probes", 30, "single requests, one at a time, for the idle median")
	throughputOnly := flag.Bool("skip-latency", false, "measure throughput only, not latency while a job runs")
	flag.Parse()
	img, err := os.ReadFile(*imagePath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jobbench: -image:", err)
		os.Exit(2)
	}
	b := bench{url: *url, model: *model, img: img}

	// Warm up: the first runs pay for lazy initialisation.
	for range 4 {
		b.single()
	}
	fmt.Printf("single requests, %d images each level:\n", *n)
	best, bestC := 0.0, 0
	for _, f := range strings.Split(*conc, ",") {
		c, _ := strconv.Atoi(f)
		tput := b.singles(*n, c)
		if tput > best {
			best, bestC = tput, c
		}
	}

	start := time.Now()
	id := b.submit(*n)
	b.await(id, nil)
	job := float64(*n) / time.Since(start).Seconds()
	b.delete(id)
	// The best level again after the job: on a shared machine the load
	// drifts, so the job is compared with the mean of both.
	again := b.singles(*n, bestC)
	ref := (best + again) / 2
	fmt.Printf("job of %d images: %.2f images/s (upload to last item), %.3f of the best single-request throughput (c=%d, %.2f/s before and %.2f/s after the job)\n",
		*n, job, job/ref, bestC, best, again)

	if *throughputOnly {
		return
	}
	idle := make([]time.Duration, 0, *probes)
	for range *probes {
		idle = append(idle, b.single())
	}
	id = b.submit(*n)
	var busy []time.Duration
	b.await(id, func() { busy = append(busy, b.single()) })
	b.delete(id)
	pi, pb := median(idle), median(busy)
	fmt.Printf("single-request p50: idle %v, during the job %v (%d requests): %.2fx\n",
		pi.Round(time.Millisecond), pb.Round(time.Millisecond), len(busy), float64(pb)/float64(pi))
}

// singles sends n images at concurrency c and returns the throughput.
func (b bench) singles(n, c int) float64 {
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				b.single()
			}
		})
	}
	wg.Wait()
	tput := float64(n) / time.Since(start).Seconds()
	fmt.Printf("  c=%-3d %6.2f images/s (%d refused with 429 and retried)\n", c, tput, shed.Swap(0))
	return tput
}

type bench struct {
	url, model string
	img        []byte
}

// single sends one image and returns its latency; a 429 (the server shed
// it) is retried after its Retry-After, and the wait counts.
func (b bench) single() time.Duration {
	start := time.Now()
	for {
		resp, err := http.Post(b.url+"/v1/remove-background?model="+b.model, "image/jpeg", bytes.NewReader(b.img))
		must(err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case 200:
			return time.Since(start)
		case 429:
			shed.Add(1)
			after, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			time.Sleep(time.Duration(max(after, 1)) * time.Second)
		default:
			fail("single request: %d", resp.StatusCode)
		}
	}
}

// shed counts the single requests the server refused with 429.
var shed atomic.Int64

func (b bench) submit(n int) string {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("task", "remove-background")
	mw.WriteField("model", b.model)
	for i := range n {
		w, _ := mw.CreateFormFile("image", fmt.Sprintf("%04d.jpg", i))
		w.Write(b.img)
	}
	mw.Close()
	resp, err := http.Post(b.url+"/v1/jobs", mw.FormDataContentType(), &body)
	must(err)
	defer resp.Body.Close()
	var r struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&r)
	if resp.StatusCode != 202 {
		fail("POST /v1/jobs: %d", resp.StatusCode)
	}
	return r.ID
}

// await polls the job until it is done, calling during (if any) in
// between instead of sleeping.
func (b bench) await(id string, during func()) {
	for {
		resp, err := http.Get(b.url + "/v1/jobs/" + id)
		must(err)
		var st struct {
			Items, Done, Failed int
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if st.Failed > 0 {
			fail("job: %d items failed", st.Failed)
		}
		if st.Items > 0 && st.Done == st.Items {
			return
		}
		if during != nil {
			during()
		} else {
			time.Sleep(250 * time.Millisecond)
		}
	}
}

func (b bench) delete(id string) {
	req, _ := http.NewRequest("DELETE", b.url+"/v1/jobs/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	must(err)
	resp.Body.Close()
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func must(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "jobbench: "+format+"\n", args...)
	os.Exit(1)
}
