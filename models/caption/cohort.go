package caption

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/imgserve/imgserve/inference"
)

// sequence is one caption request inside the decode batcher.
type sequence struct {
	ctx    context.Context
	hidden inference.Tensor // the encoder's output for this image, [1,S,E]
	start  int64            // the first token it feeds
	search search
	rows   int // rows it has in its cohort: 1 at first, up to search.width()

	queued, started time.Time
	done            chan outcome // buffered: the batcher never blocks on it
}

type outcome struct {
	tokens []int64
	err    error
}

// cohort is a set of sequences at the same past length, decoded as one
// batch. Its tensors hold every row in sequence order; a sequence's rows
// are consecutive. The cohort owns its buffers: the hidden states are its
// own copy and the cache is the decoder's last output (or a copy), so rows
// can be moved in place.
type cohort struct {
	seqs    []*sequence
	ids     []int64            // per row, the token the next step feeds
	hidden  inference.Tensor   // [rows,S,E]; empty until packed
	past    []inference.Tensor // per layer key then value, [rows,H,pastLen,D]
	pastLen int
	// With the cache kept on the device (batcher.onDevice), devPast is the
	// last step's present tensors while the rows stay where they are, and
	// past is nil; devHidden is hidden uploaded once for the steps until
	// the rows change. Rows that move come back to the host first.
	devPast   []*inference.DeviceTensor
	devHidden *inference.DeviceTensor
	ready     time.Time // since when it has been waiting for its next step
	// joining are cohorts at the same past length to append before the
	// next step; the batcher picks them under its lock and the step does
	// the copying outside it.
	joining []*cohort
}

func (c *cohort) rows() int { return len(c.ids) }

// width is the most rows the cohort can grow to (beam searches start with
// one row and widen after their first step).
func (c *cohort) width() int {
	n := 0
	for _, s := range c.seqs {
		n += s.search.width()
	}
	for _, j := range c.joining {
		n += j.width()
	}
	return n
}

// newCohort starts sequences at their start tokens with an empty cache.
// Their hidden states are packed by the first step.
func newCohort(seqs []*sequence, sig decoderSig) *cohort {
	ids := make([]int64, len(seqs))
	for i, s := range seqs {
		ids[i], s.rows = s.start, 1
	}
	c := &cohort{seqs: seqs, ids: ids}
	empty := inference.Tensor{DType: inference.FP32, Shape: []int64{int64(len(seqs)), int64(sig.heads), 0, int64(sig.headSize)}}
	c.past = slices.Repeat([]inference.Tensor{empty}, 2*sig.layers)
	return c
}

// prepare packs what the batcher left for the step: the hidden states of a
// new cohort, and the cohorts joining this one.
func (c *cohort) prepare() error {
	if c.hidden.Data == nil {
		hidden := make([]inference.Tensor, len(c.seqs))
		for i, s := range c.seqs {
			hidden[i] = s.hidden
		}
		c.hidden = concatRows(hidden)
	}
	if len(c.joining) > 0 {
		// Joining moves rows: the caches meet on the host.
		c.dropDeviceHidden()
		if err := c.cacheToHost(); err != nil {
			return err
		}
	}
	for _, j := range c.joining {
		j.dropDeviceHidden()
		if err := j.cacheToHost(); err != nil {
			return err
		}
		c.seqs = append(c.seqs, j.seqs...)
		c.ids = append(c.ids, j.ids...)
		c.hidden = concatRows([]inference.Tensor{c.hidden, j.hidden})
		for i := range c.past {
			c.past[i] = concatRows([]inference.Tensor{c.past[i], j.past[i]})
		}
	}
	c.joining = nil
	return nil
}

// pastOnHost is the cache in Go memory: past, or a copy of devPast.
func (c *cohort) pastOnHost() ([]inference.Tensor, error) {
	if c.devPast == nil {
		return c.past, nil
	}
	return onHost(c.devPast)
}

func onHost(dev []*inference.DeviceTensor) ([]inference.Tensor, error) {
	host := make([]inference.Tensor, len(dev))
	for i, d := range dev {
		var err error
		if host[i], err = d.Host(); err != nil {
			return nil, err
		}
	}
	return host, nil
}

// cacheToHost brings a cache on the device back into past.
func (c *cohort) cacheToHost() error {
	if c.devPast == nil {
		return nil
	}
	host, err := onHost(c.devPast)
	if err != nil {
		return err
	}
	releaseAll(c.devPast)
	c.past, c.devPast = host, nil
	return nil
}

func (c *cohort) dropDeviceHidden() {
	c.devHidden.Release()
	c.devHidden = nil
}

// release frees what the cohort holds in device memory; a cohort that ends
// or fails must call it.
func (c *cohort) release() {
	releaseAll(c.devPast)
	c.devPast = nil
	c.dropDeviceHidden()
}

func releaseAll(ts []*inference.DeviceTensor) {
	for _, t := range ts {
		t.Release()
	}
}

// inputs is the decoder's input list for the next step: one token per row,
// the cache so far, and use_cache_branch false on the first step, which has
// no past, as the export expects.
func (c *cohort) inputs(sig decoderSig) []inference.Tensor { return c.inputsWith(sig, c.past) }

func (c *cohort) inputsWith(sig decoderSig, past []inference.Tensor) []inference.Tensor {
	in := make([]inference.Tensor, sig.inputs)
	in[sig.ids] = inference.NewTensor([]int64{int64(c.rows()), 1}, c.ids)
	in[sig.encoder] = c.hidden
	for l := range sig.layers {
		in[sig.pastKey[l]], in[sig.pastValue[l]] = past[2*l], past[2*l+1]
	}
	in[sig.useCache] = inference.NewTensor([]int64{1}, []bool{c.pastLen > 0})
	return in
}

// boundInputs is inputs for a run with the cache and the hidden states
// on the device where they are there.
func (c *cohort) boundInputs(sig decoderSig) []inference.BoundInput {
	past := c.past
	if c.devPast != nil {
		past = make([]inference.Tensor, 2*sig.layers) // replaced below
	}
	host := c.inputsWith(sig, past)
	in := make([]inference.BoundInput, len(host))
	for i, t := range host {
		in[i].Host = t
	}
	if c.devHidden != nil {
		in[sig.encoder] = inference.BoundInput{Device: c.devHidden}
	}
	if c.devPast != nil {
		for l := range sig.layers {
			in[sig.pastKey[l]] = inference.BoundInput{Device: c.devPast[2*l]}
			in[sig.pastValue[l]] = inference.BoundInput{Device: c.devPast[2*l+1]}
		}
	}
	return in
}

// cache is a step's present tensors, in Go memory or on the device.
type cache struct {
	host []inference.Tensor
	dev  []*inference.DeviceTensor
}

func (k cache) release() { releaseAll(k.dev) }

// present takes the new cache out of a step's outputs (host or device
// ones), checking that it has the cohort's rows and one more position.
func (c *cohort) present(host []inference.Tensor, dev []*inference.DeviceTensor, sig decoderSig) (cache, error) {
	var k cache
	if dev != nil {
		k.dev = make([]*inference.DeviceTensor, 2*sig.layers)
	} else {
		k.host = make([]inference.Tensor, 2*sig.layers)
	}
	want := []int64{int64(c.rows()), int64(sig.heads), int64(c.pastLen + 1), int64(sig.headSize)}
	for i := range 2 * sig.layers {
		out := sig.presentKey[i/2]
		if i%2 == 1 {
			out = sig.presentValue[i/2]
		}
		var (
			dt    inference.DType
			shape []int64
		)
		if dev != nil {
			k.dev[i] = dev[out]
			dt, shape = k.dev[i].DType, k.dev[i].Shape
		} else {
			k.host[i] = host[out]
			dt, shape = k.host[i].DType, k.host[i].Shape
		}
		if !slices.Equal(shape, want) || dt != inference.FP32 {
			return cache{}, fmt.Errorf("decoder returned a cache of %v %v, want FP32 %v", dt, shape, want)
		}
	}
	return k, nil
}

type finished struct {
	seq    *sequence
	tokens []int64
	err    error
}

// advance gives each sequence its rows' logits (rows*V values, row order)
// and moves the cohort to the next step: the sequences that are done leave,
// the others' rows follow their searches' choices, with next, the step's
// present tensors, as the cache.
func (c *cohort) advance(logits []float32, next cache) ([]finished, error) {
	vocab := len(logits) / c.rows()
	type move struct {
		parents []int
		next    []int64
		end     bool
	}
	moves := make([]move, len(c.seqs))
	first := make([]int, len(c.seqs)) // each sequence's first row
	for i := 1; i < len(c.seqs); i++ {
		first[i] = first[i-1] + c.seqs[i-1].rows
	}
	// The searches are independent; run them side by side.
	parallel(len(c.seqs), func(i int) {
		s := c.seqs[i]
		view := make([][]float32, s.rows)
		for r := range view {
			view[r] = logits[(first[i]+r)*vocab : (first[i]+r+1)*vocab]
		}
		m := &moves[i]
		m.parents, m.next, m.end = s.search.step(view)
	})

	var (
		done      []finished
		keep      []*sequence
		parents   []int
		ids       []int64
		regrouped bool
	)
	for i, s := range c.seqs {
		m := moves[i]
		if m.end {
			done = append(done, finished{seq: s, tokens: s.search.tokens()})
			regrouped = true
			continue
		}
		for _, p := range m.parents {
			parents = append(parents, first[i]+p)
		}
		ids = append(ids, m.next...)
		regrouped = regrouped || len(m.parents) != s.rows
		s.rows = len(m.parents)
		keep = append(keep, s)
	}
	if err := c.keep(keep, parents, ids, next, regrouped); err != nil {
		return nil, err
	}
	c.pastLen++
	return done, nil
}

// keep makes the cohort's rows those at parents (indices into the current
// rows), for the sequences in seqs, taking the cache rows from next: the
// step's present tensors, or the cohort's own cache. It owns next, and the
// cohort's previous cache must already be released or be next itself.
// regrouped says whether a sequence left or changed its row count.
//
// The cohort owns every buffer involved, so rows move in place: a step that
// keeps every row where it is (greedy decoding with nobody leaving) hands
// the decoder's output back as the next input untouched, on the device
// too; sequences leaving move later rows up; beams taking other rows'
// histories copy just those rows. Only beams widening from their first row
// need larger buffers. Rows on the device that move come to the host.
func (c *cohort) keep(seqs []*sequence, parents []int, ids []int64, next cache, regrouped bool) error {
	if next.dev != nil && !unmoved(parents, c.rows()) {
		host, err := onHost(next.dev)
		next.release()
		if err != nil {
			return err
		}
		next = cache{host: host}
	}
	for i := range next.host {
		next.host[i] = reorderRows(next.host[i], parents)
	}
	// Every row of a sequence holds the same encoder output, so beams
	// swapping histories inside a sequence leave the hidden states be.
	if regrouped {
		c.hidden = reorderRows(c.hidden, parents)
		c.dropDeviceHidden()
	}
	c.seqs, c.ids, c.past, c.devPast = seqs, ids, next.host, next.dev
	return nil
}

// unmoved says whether parents keeps every one of rows rows where it is.
func unmoved(parents []int, rows int) bool {
	if len(parents) != rows {
		return false
	}
	for i, p := range parents {
		if p != i {
			return false
		}
	}
	return true
}

func rowBytes(t inference.Tensor) int {
	n := t.DType.Size()
	for _, d := range t.Shape[1:] {
		n *= int(d)
	}
	return n
}

// reorderRows returns t with row i holding what row parents[i] held. It
// works in t's own buffer unless there are more rows than before.
func reorderRows(t inference.Tensor, parents []int) inference.Tensor {
	rb := rowBytes(t)
	n := len(parents)
	shape := slices.Clone(t.Shape)
	shape[0] = int64(n)
	if n > int(t.Shape[0]) {
		data := make([]byte, n*rb)
		for i, p := range parents {
			copy(data[i*rb:(i+1)*rb], t.Data[p*rb:(p+1)*rb])
		}
		return inference.Tensor{DType: t.DType, Shape: shape, Data: data}
	}
	data := t.Data[:n*rb]
	row := func(i int) []byte { return t.Data[i*rb : (i+1)*rb] }
	// Rows are written in order. A row read after it was overwritten (read
	// by a later row, itself moved) is set aside first; rows that only move
	// up never are.
	var aside []int
	for i, p := range parents {
		if p < i && parents[p] != p && !slices.Contains(aside, p) {
			aside = append(aside, p)
		}
	}
	var scratch []byte
	if len(aside) > 0 {
		scratch = make([]byte, len(aside)*rb)
		for k, p := range aside {
			copy(scratch[k*rb:], row(p))
		}
	}
	for i, p := range parents {
		if p == i {
			continue
		}
		if k := slices.Index(aside, p); k >= 0 {
			copy(row(i), scratch[k*rb:(k+1)*rb])
		} else {
			copy(row(i), row(p))
		}
	}
	return inference.Tensor{DType: t.DType, Shape: shape, Data: data}
}

// concatRows joins tensors of one row shape along dimension 0, into a new
// buffer.
func concatRows(ts []inference.Tensor) inference.Tensor {
	n, size := 0, 0
	for _, t := range ts {
		n += int(t.Shape[0])
		size += len(t.Data)
	}
	data := make([]byte, 0, size)
	for _, t := range ts {
		data = append(data, t.Data...)
	}
	shape := slices.Clone(ts[0].Shape)
	shape[0] = int64(n)
	return inference.Tensor{DType: ts[0].DType, Shape: shape, Data: data}
}
