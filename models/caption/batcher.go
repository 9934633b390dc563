package caption

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/recovered"
	"github.com/imgserve/imgserve/models"
)

// batcher decodes every caption of one decoder model with continuous
// batching. Sequences at the same past length form a cohort that runs as
// one decoder batch, one token per row per step, each step feeding the
// previous step's present tensors back as the past. A sequence that
// finishes leaves its cohort at once; the others go on. A request that
// arrives while cohorts are running waits at most for the step in flight:
// at the next step boundary its first step (past length 0) runs as a new
// cohort, together with every other request that arrived meanwhile, taking
// turns with the running cohorts. Cohorts never mix past lengths because
// the export takes no attention mask to pad them with; two cohorts that
// reach the same past length are merged.
//
// The batcher, not the registry's scheduler, forms the decoder's batches:
// it knows every running sequence, so a step runs the moment its rows are
// ready instead of waiting a queue delay for rows that are still being
// computed, and a cohort whose rows did not move passes the decoder's
// present tensors back in without a copy. The registry's scheduler (with
// batching off, max_batch_size 1) only runs each step on the session.
//
// It owns a goroutine only while it has sequences.
type batcher struct {
	model   *models.Model
	sig     decoderSig
	maxRows int           // most rows in one step
	join    time.Duration // how long a new cohort waits for company
	maxSeqs int           // most sequences waiting or decoding
	slots   int           // steps in flight at once
	obs     inference.Observer
	// onDevice keeps each cohort's cache (and its hidden states) in the
	// decoder session's device memory between steps, running the session
	// with I/O binding; keepOut marks the present outputs that stay there.
	onDevice bool
	keepOut  []bool

	mu      sync.Mutex
	waiting []*sequence // not yet in a cohort
	idle    []*cohort   // between steps
	seqs    int         // sequences waiting or in a cohort
	running int         // steps in flight
	looping bool
	wake    chan struct{}
}

type nopObserver struct{}

func (nopObserver) ObserveBatch(int, time.Duration)                    {}
func (nopObserver) ObserveRequest(time.Duration, time.Duration, error) {}

// generate decodes one caption from an encoder output [1,S,E].
// Its first step feeds start.
func (b *batcher) generate(ctx context.Context, hidden inference.Tensor, start int64, s search) ([]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := hidden.Validate(); err != nil || hidden.DType != inference.FP32 || len(hidden.Shape) != 3 || hidden.Shape[0] != 1 ||
		(b.sig.hiddenSize > 0 && hidden.Shape[2] != int64(b.sig.hiddenSize)) {
		return nil, fmt.Errorf("%w: encoder output %v %v, want FP32 [1,S,%d]", ErrBadParams, hidden.DType, hidden.Shape, b.sig.hiddenSize)
	}
	if s.width() > b.maxRows {
		return nil, fmt.Errorf("%w: %d beams, the decoder takes at most %d rows per step", ErrBadParams, s.width(), b.maxRows)
	}
	seq := &sequence{ctx: ctx, hidden: hidden, start: start, search: s, queued: time.Now(), done: make(chan outcome, 1)}
	b.mu.Lock()
	if b.seqs >= b.maxSeqs {
		b.mu.Unlock()
		return nil, inference.ErrQueueFull
	}
	b.seqs++
	b.waiting = append(b.waiting, seq)
	if !b.looping {
		b.looping = true
		go b.loop()
	}
	b.mu.Unlock()
	b.signal()
	select {
	case o := <-seq.done:
		return o.tokens, o.err
	case <-ctx.Done():
		// The sequence leaves its cohort before the next step.
		return nil, ctx.Err()
	}
}

func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// loop hands cohorts to steps until no sequence is left.
func (b *batcher) loop() {
	b.mu.Lock()
	for {
		if b.seqs == 0 && b.running == 0 {
			b.looping = false
			b.mu.Unlock()
			return
		}
		wait := time.Duration(-1)
		if b.running < b.slots {
			c, w := b.nextRecovering(time.Now())
			if c != nil {
				b.running++
				go b.run(c)
				continue
			}
			wait = w
		}
		b.mu.Unlock()
		if wait >= 0 {
			t := time.NewTimer(wait)
			select {
			case <-b.wake:
			case <-t.C:
			}
			t.Stop()
		} else {
			<-b.wake
		}
		b.mu.Lock()
	}
}

// next picks the cohort to step: whichever has waited longest, the
// requests not yet in a cohort counting as one once the oldest of them has
// waited the join delay, or at once when they fill a batch. When nothing
// is due, it says how long until the waiting requests are (-1: no timer).
// Called with mu held.
func (b *batcher) next(now time.Time) (*cohort, time.Duration) {
	b.dropEnded()
	var best *cohort
	bi := -1
	for i, c := range b.idle {
		if best == nil || c.ready.Before(best.ready) {
			best, bi = c, i
		}
	}
	if len(b.waiting) > 0 {
		due := b.waiting[0].queued.Add(b.join)
		width := 0
		for _, s := range b.waiting {
			width += s.search.width()
		}
		if width >= b.maxRows {
			due = b.waiting[0].queued
		}
		if !due.After(now) && (best == nil || due.Before(best.ready)) {
			return b.form(now), 0
		}
		if best == nil {
			return nil, due.Sub(now)
		}
	}
	if best == nil {
		return nil, -1
	}
	b.idle = append(b.idle[:bi], b.idle[bi+1:]...)
	// Cohorts that reached the same past length join, while they fit; the
	// step does the copying, outside the lock.
	for i := 0; i < len(b.idle); {
		c := b.idle[i]
		if c.pastLen == best.pastLen && best.width()+c.width() <= b.maxRows &&
			slices.Equal(c.hidden.Shape[1:], best.hidden.Shape[1:]) {
			best.joining = append(best.joining, c)
			b.idle = append(b.idle[:i], b.idle[i+1:]...)
			continue
		}
		i++
	}
	return best, 0
}

// form starts a cohort from the waiting requests, oldest first, as many as
// fit, whose encoder outputs have the oldest one's shape (they are packed
// into one tensor). Called with mu held.
func (b *batcher) form(now time.Time) *cohort {
	var take []*sequence
	width := 0
	rest := b.waiting[:0]
	shape := b.waiting[0].hidden.Shape[1:]
	for _, s := range b.waiting {
		if w := s.search.width(); width+w <= b.maxRows && slices.Equal(s.hidden.Shape[1:], shape) {
			take = append(take, s)
			width += w
			s.started = now
			continue
		}
		rest = append(rest, s)
	}
	clear(b.waiting[len(rest):])
	b.waiting = rest
	return newCohort(take, b.sig)
}

// dropEnded answers waiting requests whose caller has gone. Called with
// mu held.
func (b *batcher) dropEnded() {
	keep := b.waiting[:0]
	for _, s := range b.waiting {
		if err := s.ctx.Err(); err != nil {
			b.finish(s, nil, err)
			continue
		}
		keep = append(keep, s)
	}
	clear(b.waiting[len(keep):])
	b.waiting = keep
}

// finish answers a sequence. Called with mu held.
func (b *batcher) finish(s *sequence, tokens []int64, err error) {
	b.seqs--
	now := time.Now()
	queue, compute := now.Sub(s.queued), time.Duration(0)
	if !s.started.IsZero() {
		queue, compute = s.started.Sub(s.queued), now.Sub(s.started)
	}
	b.obs.ObserveRequest(queue, compute, err)
	s.done <- outcome{tokens: tokens, err: err}
}

// nextRecovering is next, with a panic (a bug in forming a cohort) failing
// the sequences that were waiting instead of the process. Called with mu
// held, which a panic inside leaves held.
func (b *batcher) nextRecovering(now time.Time) (c *cohort, wait time.Duration) {
	defer func() {
		if v := recover(); v != nil {
			err := recovered.Report("caption.batcher", v)
			for _, s := range b.waiting {
				b.finish(s, nil, err)
			}
			b.waiting = nil
			c, wait = nil, -1
		}
	}()
	return b.next(now)
}

// run steps one cohort and puts it back, without the sequences that
// finished. A panic in the step (the decoder's run, the search) fails the
// cohort's sequences, not the process.
func (b *batcher) run(c *cohort) {
	seqs := slices.Clone(c.seqs)
	for _, j := range c.joining {
		seqs = append(seqs, j.seqs...)
	}
	var done []finished
	func() {
		defer func() {
			if v := recover(); v != nil {
				err := recovered.Report("caption.step", v)
				done = done[:0]
				for _, s := range seqs {
					done = append(done, finished{seq: s, err: err})
				}
				c.seqs = nil
			}
		}()
		done = b.step(c)
	}()
	b.mu.Lock()
	b.running--
	for _, d := range done {
		b.finish(d.seq, d.tokens, d.err)
	}
	if len(c.seqs) > 0 {
		c.ready = time.Now()
		b.idle = append(b.idle, c)
	}
	b.mu.Unlock()
	b.signal()
}

// step runs the decoder once for every row of c and advances each
// sequence's search; it returns the sequences that are done. A cohort left
// without sequences has released its device memory.
func (b *batcher) step(c *cohort) []finished {
	if err := c.prepare(); err != nil {
		return failAll(c, nil, err)
	}
	// Sequences whose caller has gone leave before the step.
	done, err := b.dropCancelled(c)
	if err != nil {
		return failAll(c, done, err)
	}
	if len(c.seqs) == 0 {
		c.release()
		return done
	}
	start := time.Now()
	rows := c.rows()
	next, logits, err := b.decode(c)
	if err != nil {
		return failAll(c, done, err)
	}
	advanced, err := c.advance(logits, next)
	if err != nil {
		return failAll(c, done, err)
	}
	done = append(done, advanced...)
	b.obs.ObserveBatch(rows, time.Since(start))
	if len(c.seqs) == 0 {
		c.release()
	}
	return done
}

// failAll ends every sequence of c with err, after those already done.
func failAll(c *cohort, done []finished, err error) []finished {
	for _, s := range c.seqs {
		done = append(done, finished{seq: s, err: err})
	}
	c.seqs = nil
	c.release()
	return done
}

// decode runs the decoder on c's rows and returns the new cache and each
// row's last logits.
func (b *batcher) decode(c *cohort) (cache, []float32, error) {
	if b.onDevice {
		return b.decodeOnDevice(c)
	}
	out, err := b.model.Infer(context.Background(), c.inputs(b.sig))
	if err != nil {
		return cache{}, nil, err
	}
	next, err := c.present(out, nil, b.sig)
	if err != nil {
		return cache{}, nil, err
	}
	logits, err := lastLogits(out[b.sig.logits], c.rows())
	return next, logits, err
}

// decodeOnDevice runs one step on the decoder's session directly, with the
// cache and hidden states bound where they are and the new cache left on
// the device; only the logits come to the host. The batcher's own slots
// bound the steps in flight, as the decoder's scheduler otherwise would.
func (b *batcher) decodeOnDevice(c *cohort) (cache, []float32, error) {
	sess, err := b.model.Session()
	if err != nil {
		return cache{}, nil, err
	}
	if c.devHidden == nil {
		if c.devHidden, err = sess.Upload(c.hidden); err != nil {
			return cache{}, nil, err
		}
	}
	host, dev, err := sess.RunBound(c.boundInputs(b.sig), b.keepOut)
	// The step's past is spent, whatever happened.
	releaseAll(c.devPast)
	c.devPast = nil
	if err != nil {
		return cache{}, nil, err
	}
	next, err := c.present(host, dev, b.sig)
	if err != nil {
		releaseAll(dev)
		return cache{}, nil, err
	}
	logits, err := lastLogits(host[b.sig.logits], c.rows())
	if err != nil {
		next.release()
		return cache{}, nil, err
	}
	return next, logits, nil
}

// dropCancelled removes the rows of sequences whose context ended.
func (b *batcher) dropCancelled(c *cohort) ([]finished, error) {
	var (
		done    []finished
		keep    []*sequence
		parents []int
		ids     []int64
		off     int
	)
	for _, s := range c.seqs {
		if err := s.ctx.Err(); err != nil {
			done = append(done, finished{seq: s, err: err})
		} else {
			keep = append(keep, s)
			for r := range s.rows {
				parents = append(parents, off+r)
				ids = append(ids, c.ids[off+r])
			}
		}
		off += s.rows
	}
	if done != nil {
		if err := c.keep(keep, parents, ids, cache{host: c.past, dev: c.devPast}, true); err != nil {
			return done, err
		}
	}
	return done, nil
}

// lastLogits returns the logits of each row's last position, rows*V values.
func lastLogits(t inference.Tensor, rows int) ([]float32, error) {
	if len(t.Shape) != 3 || t.Shape[0] != int64(rows) || t.Shape[1] < 1 || t.Shape[2] < 1 || t.DType != inference.FP32 {
		return nil, fmt.Errorf("decoder returned logits of %v %v, want FP32 [%d,T,V]", t.DType, t.Shape, rows)
	}
	all := inference.Values[float32](t)
	seq, vocab := int(t.Shape[1]), int(t.Shape[2])
	if seq == 1 {
		return all, nil
	}
	out := make([]float32, 0, rows*vocab)
	for r := range rows {
		out = append(out, all[(r*seq+seq-1)*vocab:(r*seq+seq)*vocab]...)
	}
	return out, nil
}
