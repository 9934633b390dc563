package caption

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"slices"
	"sync"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/recovered"
	"github.com/imgserve/imgserve/internal/testmodels"
)

// batchedPipeline decodes up to rows rows per step; a cohort forms only
// when it is full (the join delay is long), which makes the batches of
// concurrent requests deterministic.
func batchedPipeline(t *testing.T, rows int, rec *recorder) *Pipeline {
	cfg := testConfig(testmodels.CaptionDecoderSynth, "{max_batch_size: 1, max_queue_delay: 1m}",
		fmt.Sprintf("{decode_batch_size: %q}", fmt.Sprint(rows)))
	return pipeline(t, cfg, func(label string) inference.Observer {
		if label != DecodeLabel(decName) {
			t.Errorf("observer label %q, want %q", label, DecodeLabel(decName))
		}
		return rec
	})
}

// Eight concurrent captions of distinct images decode in shared steps; each
// leaves the batch when it is done, the others going on with fewer rows,
// and each gets its own image's caption.
func TestConcurrentCaptionsShareSteps(t *testing.T) {
	rec := &recorder{}
	p := batchedPipeline(t, MaxBeams, rec)
	hidden := make([]inference.Tensor, len(testImages))
	steps := map[int]int{} // rows per step the rule predicts
	for i, c := range testImages {
		hidden[i] = encode(t, p, c)
		n := len(synthCaption(synthCode(hidden[i]), 16))
		for s := range n + 1 { // n tokens, then the step that predicts EOS
			steps[s]++
		}
	}
	got := make([][]int64, len(hidden))
	var wg sync.WaitGroup
	for i := range hidden {
		wg.Go(func() {
			var err error
			if got[i], err = p.Generate(context.Background(), hidden[i], Params{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i := range hidden {
		if want := synthCaption(synthCode(hidden[i]), 16); !slices.Equal(got[i], want) {
			t.Errorf("image %d: %v, want %v", i, got[i], want)
		}
	}
	want := make([]int, len(steps))
	for s, n := range steps {
		want[s] = n
	}
	if rows := rec.rows(); !slices.Equal(rows, want) {
		t.Errorf("rows per decoder step %v, want %v", rows, want)
	}
	if rec.requests != len(hidden) || len(rec.failures) != 0 {
		t.Errorf("observed %d requests, failures %v", rec.requests, rec.failures)
	}
}

// More concurrent captions than a step takes: they decode in several
// cohorts of at most decode_batch_size rows, two steps at a time, joining
// as sequences leave, and every caption is still its own image's.
func TestMoreCaptionsThanRows(t *testing.T) {
	rec := &recorder{}
	cfg := testConfig(testmodels.CaptionDecoderSynth, "{max_batch_size: 1, max_queue_delay: 1m, instances: 2}", `{decode_batch_size: "4"}`)
	p := pipeline(t, cfg, func(string) inference.Observer { return rec })
	var hidden []inference.Tensor
	total := 0
	for _, c := range testImages {
		h := encode(t, p, c)
		hidden = append(hidden, h, h)
		total += 2 * (len(synthCaption(synthCode(h), 16)) + 1)
	}
	var wg sync.WaitGroup
	for i, h := range hidden {
		wg.Go(func() {
			got, err := p.dec.generate(context.Background(), h, synthEOS, &greedy{eos: synthEOS, max: 16})
			if want := synthCaption(synthCode(h), 16); err != nil || !slices.Equal(got, want) {
				t.Errorf("caption %d: %v %v, want %v", i, got, err, want)
			}
		})
	}
	wg.Wait()
	sum := 0
	for _, r := range rec.rows() {
		if r > 4 {
			t.Errorf("a step of %d rows; decode_batch_size is 4", r)
		}
		sum += r
	}
	if sum != total {
		t.Errorf("%d rows decoded, want %d", sum, total)
	}
}

// hooked is a search that calls hook before each of its steps.
type hooked struct {
	search
	n    int
	hook func(step int)
}

func (h *hooked) step(logits [][]float32) ([]int, []int64, bool) {
	h.hook(h.n)
	h.n++
	return h.search.step(logits)
}

// A request that arrives while another is decoding starts at the next step
// boundary, taking turns with the running one, instead of waiting for it to
// finish.
func TestNewRequestJoinsAtNextStep(t *testing.T) {
	cfg := testConfig(testmodels.CaptionDecoderSynth, "{max_batch_size: 1}", "{}")
	p := pipeline(t, cfg, nil)
	b := p.dec
	blue := encode(t, p, testImages[2]) // the rule's longest caption: 7 tokens
	red := encode(t, p, testImages[0])

	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
		got   []int64
	)
	log := func(who string, step int) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, fmt.Sprint(who, step))
	}
	second := &hooked{search: &greedy{eos: synthEOS, max: 16}, hook: func(n int) { log("B", n) }}
	first := &hooked{search: &greedy{eos: synthEOS, max: 16}, hook: func(n int) {
		log("A", n)
		if n != 2 {
			return
		}
		wg.Go(func() {
			var err error
			if got, err = b.generate(context.Background(), red, synthEOS, second); err != nil {
				t.Error(err)
			}
		})
		for waiting := 0; waiting == 0; {
			b.mu.Lock()
			waiting = len(b.waiting)
			b.mu.Unlock()
		}
	}}
	a, err := b.generate(context.Background(), blue, synthEOS, first)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, synthCaption(synthCode(blue), 16)) || !slices.Equal(got, synthCaption(synthCode(red), 16)) {
		t.Errorf("captions %v and %v", a, got)
	}
	want := []string{"A0", "A1", "A2", "B0", "A3", "B1", "A4", "B2", "A5", "B3", "A6", "A7"}
	if !slices.Equal(order, want) {
		t.Errorf("step order %v, want %v", order, want)
	}
}

// A request whose caller gives up leaves its cohort before the next step;
// the others finish as if it had never been there.
func TestCancelledRequestLeaves(t *testing.T) {
	rec := &recorder{}
	p := batchedPipeline(t, 3, rec)
	var hidden []inference.Tensor
	for _, c := range testImages[:3] {
		hidden = append(hidden, encode(t, p, c))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quitter := &hooked{search: &greedy{eos: synthEOS, max: 16}, hook: func(n int) {
		if n == 1 {
			cancel()
		}
	}}
	got := make([][]int64, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range hidden {
		wg.Go(func() {
			var s search = &greedy{eos: synthEOS, max: 16}
			c := context.Background()
			if i == 0 {
				s, c = quitter, ctx
			}
			got[i], errs[i] = p.dec.generate(c, hidden[i], synthEOS, s)
		})
	}
	wg.Wait()
	if !errors.Is(errs[0], context.Canceled) {
		t.Errorf("cancelled request: err %v", errs[0])
	}
	want := []int{3, 3} // the cancelled one ran two steps
	for s := 2; ; s++ {
		n := 0
		for i := 1; i < 3; i++ {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if exp := synthCaption(synthCode(hidden[i]), 16); s == 2 && !slices.Equal(got[i], exp) {
				t.Errorf("request %d: %v, want %v", i, got[i], exp)
			}
			if s <= len(got[i]) {
				n++
			}
		}
		if n == 0 {
			break
		}
		want = append(want, n)
	}
	// The batcher answers the cancelled request itself once it notices.
	for {
		p.dec.mu.Lock()
		idle := p.dec.seqs == 0
		p.dec.mu.Unlock()
		if idle {
			break
		}
	}
	if rows := rec.rows(); !slices.Equal(rows, want) {
		t.Errorf("rows per step %v, want %v", rows, want)
	}
	if len(rec.failures) != 1 || !errors.Is(rec.failures[0], context.Canceled) {
		t.Errorf("observed failures %v, want one cancellation", rec.failures)
	}
}

// Past max_queue_size waiting or decoding captions, a request is refused at
// once with the scheduler's queue-full error (429 over HTTP).
func TestDecodeQueueFull(t *testing.T) {
	cfg := testConfig(testmodels.CaptionDecoderSynth, "{max_batch_size: 1, max_queue_size: 1}", "{}")
	p := pipeline(t, cfg, nil)
	hidden := encode(t, p, testImages[0])
	release, running := make(chan struct{}), make(chan struct{})
	blocker := &hooked{search: &greedy{eos: synthEOS, max: 16}, hook: func(n int) {
		if n == 0 {
			close(running)
			<-release
		}
	}}
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := p.dec.generate(context.Background(), hidden, synthEOS, blocker); err != nil {
			t.Error(err)
		}
	})
	<-running
	if _, err := p.Generate(context.Background(), hidden, Params{}); !errors.Is(err, inference.ErrQueueFull) {
		t.Errorf("err %v, want ErrQueueFull", err)
	}
	close(release)
	wg.Wait()
	if _, err := p.Generate(context.Background(), hidden, Params{}); err != nil {
		t.Errorf("after the queue drained: %v", err)
	}
}

// A panic in a decode step (here the search, which runs inside the step's
// goroutine) fails the captions of that step with an error and is counted;
// the process and the batcher live on.
func TestStepPanicIsRecovered(t *testing.T) {
	p := defaultPipeline(t)
	hidden := encode(t, p, testImages[0])
	before := panicCount("caption.step")
	bomb := &hooked{search: &greedy{eos: synthEOS, max: 16}, hook: func(n int) {
		if n == 1 {
			panic("test: a bug in a step")
		}
	}}
	if _, err := p.dec.generate(context.Background(), hidden, synthEOS, bomb); !errors.Is(err, recovered.ErrPanic) {
		t.Fatalf("err %v, want a recovered panic", err)
	}
	if got := panicCount("caption.step"); got != before+1 {
		t.Fatalf("caption.step panics counted: %d, want %d", got, before+1)
	}
	got, err := p.Generate(context.Background(), hidden, Params{})
	if want := synthCaption(synthCode(hidden), 16); err != nil || !slices.Equal(got, want) {
		t.Fatalf("after the panic: %v %v, want %v", got, err, want)
	}
}

func panicCount(where string) uint64 {
	for _, c := range recovered.Counts() {
		if c.Where == where {
			return c.N
		}
	}
	return 0
}

// The cache rows follow their sequences through every regrouping: beams
// widening from one row, beams swapping histories, sequences leaving. The
// synthetic decoder writes each fed token into the keys and its position
// into the values, so every row's cache must spell its own history.
func TestCacheRowsFollowTheirSequences(t *testing.T) {
	p := defaultPipeline(t)
	c := newCohort(testSequences(t, p, testImages[:4]), p.dec.sig)
	v := &cacheVerifier{prev: map[*sequence][][]int64{}}
	for step := 1; len(c.seqs) > 0; step++ {
		stepCohort(t, p.dec, c)
		if len(c.seqs) > 0 && c.pastLen != step {
			t.Fatalf("past length %d after %d steps", c.pastLen, step)
		}
		v.check(t, c, p.dec.sig)
	}
	if !v.reordered {
		t.Error("no beam ever swapped history; the test does not exercise reordering")
	}
}

// Two cohorts at the same past length join into one batch, and every row
// keeps its own cache.
func TestCohortsJoin(t *testing.T) {
	p := defaultPipeline(t)
	seqs := testSequences(t, p, testImages[:6])
	a, b := newCohort(seqs[:3], p.dec.sig), newCohort(seqs[3:], p.dec.sig)
	v := &cacheVerifier{prev: map[*sequence][][]int64{}}
	for range 2 {
		stepCohort(t, p.dec, a)
		stepCohort(t, p.dec, b)
	}
	rows := a.rows() + b.rows()
	a.joining = []*cohort{b}
	stepCohort(t, p.dec, a)
	if len(a.seqs) != 6 || a.pastLen != 3 {
		t.Fatalf("joined cohort has %d sequences at past length %d", len(a.seqs), a.pastLen)
	}
	v.check(t, a, p.dec.sig)
	if a.rows() != rows {
		t.Fatalf("%d rows after joining %d", a.rows(), rows)
	}
	for len(a.seqs) > 0 {
		stepCohort(t, p.dec, a)
		v.check(t, a, p.dec.sig)
	}
}

// testSequences are greedy and three-beam searches, alternately, on the
// given images.
func testSequences(t *testing.T, p *Pipeline, colours []color.NRGBA) []*sequence {
	var seqs []*sequence
	for i, c := range colours {
		var s search = &greedy{eos: synthEOS, max: 16}
		if i%2 == 1 {
			s = newBeamSearch(3, synthEOS, 16, 1, false)
		}
		seqs = append(seqs, &sequence{ctx: context.Background(), hidden: encode(t, p, c), start: synthEOS, search: s})
	}
	return seqs
}

func stepCohort(t *testing.T, b *batcher, c *cohort) {
	t.Helper()
	for _, d := range b.step(c) {
		if d.err != nil {
			t.Fatal(d.err)
		}
	}
}

// cacheVerifier checks that each row of a cohort holds its own history and
// its own image, and notes whether a beam took another row's history.
type cacheVerifier struct {
	prev      map[*sequence][][]int64
	reordered bool
}

func (v *cacheVerifier) check(t *testing.T, c *cohort, sig decoderSig) {
	t.Helper()
	row := 0
	for _, s := range c.seqs {
		var hists [][]int64
		switch x := s.search.(type) {
		case *greedy:
			hists = [][]int64{x.out}
		case *beamSearch:
			for i, h := range x.running {
				hists = append(hists, h.toks)
				// A row whose history does not extend the row's previous
				// one took another beam's cache.
				if p := v.prev[s]; len(p) == len(x.running) && !slices.Equal(h.toks[:len(h.toks)-1], p[i]) {
					v.reordered = true
				}
			}
			v.prev[s] = hists
		}
		if len(hists) != s.rows {
			t.Fatalf("sequence has %d rows and %d histories", s.rows, len(hists))
		}
		for _, h := range hists {
			fed := append([]int64{synthEOS}, h[:len(h)-1]...)
			checkCacheRow(t, c, sig, row, fed)
			if c.ids[row] != h[len(h)-1] {
				t.Fatalf("row %d feeds %d next, its history ends with %d", row, c.ids[row], h[len(h)-1])
			}
			if !slices.Equal(rowData(c.hidden, row), s.hidden.Data) {
				t.Fatalf("row %d holds another image's encoder output", row)
			}
			row++
		}
	}
	if row != c.rows() {
		t.Fatalf("%d rows for %d", c.rows(), row)
	}
}

func rowData(t inference.Tensor, row int) []byte {
	rb := rowBytes(t)
	return t.Data[row*rb : (row+1)*rb]
}

func checkCacheRow(t *testing.T, c *cohort, sig decoderSig, row int, fed []int64) {
	t.Helper()
	past, err := c.pastOnHost()
	if err != nil {
		t.Fatal(err)
	}
	for l := range sig.layers {
		key := inference.Values[float32](inference.Tensor{DType: inference.FP32, Data: rowData(past[2*l], row)})
		val := inference.Values[float32](inference.Tensor{DType: inference.FP32, Data: rowData(past[2*l+1], row)})
		if len(key) != sig.heads*len(fed)*sig.headSize {
			t.Fatalf("layer %d row %d: %d values for %d positions", l, row, len(key), len(fed))
		}
		off := float32(100000 * l)
		for i := range key {
			pos := (i / sig.headSize) % len(fed)
			if key[i] != float32(fed[pos])+off || val[i] != float32(pos)+off {
				t.Fatalf("layer %d row %d position %d: key %v value %v, want %v and %v",
					l, row, pos, key[i], val[i], float32(fed[pos])+off, float32(pos)+off)
			}
		}
	}
}

// reorderRows, working in place, equals a plain gather for every kind of
// parent list: swaps, cycles, duplicates, fewer rows and more rows.
func TestReorderRows(t *testing.T) {
	for _, parents := range [][]int{
		{0, 1, 2, 3}, {1, 0, 3, 2}, {3, 0, 1, 2}, {1, 2, 3, 0}, {0, 0, 0, 0}, {3, 3, 1, 1},
		{2, 3}, {1, 3}, {3}, {0, 2, 3}, {2, 2, 0}, {0, 0, 1, 1, 2, 2, 3, 3}, {3, 2, 1, 0, 0},
	} {
		vals := []float32{0, 0, 1, 1, 2, 2, 3, 3}
		got := inference.Values[float32](reorderRows(inference.NewTensor([]int64{4, 2}, vals), parents))
		var want []float32
		for _, p := range parents {
			want = append(want, float32(p), float32(p))
		}
		if !slices.Equal(got, want) {
			t.Errorf("parents %v: rows %v, want %v", parents, got, want)
		}
	}
}
