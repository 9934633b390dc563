package caption

import (
	"cmp"
	"math"
	"runtime"
	"slices"
	"sync/atomic"

	"github.com/imgserve/imgserve/internal/recovered"
)

// search is one caption's decoding strategy. Each step it gets the
// last-position logits of its rows in the decoder batch and answers which
// rows continue, as the row they descend from (parents, indices into
// logits) and the token each feeds next. Its rows' caches are reordered to
// follow parents, which is how beams swap histories.
type search interface {
	step(logits [][]float32) (parents []int, next []int64, done bool)
	// tokens is the caption, without the start token or EOS.
	tokens() []int64
	// width is the most rows the search ever uses.
	width() int
}

// greedy takes the most likely token until EOS or max tokens, as
// transformers' greedy_search with no logits processors.
type greedy struct {
	eos int64
	max int
	out []int64
}

func (g *greedy) step(logits [][]float32) ([]int, []int64, bool) {
	tok := int64(argmax(logits[0]))
	if tok == g.eos {
		return nil, nil, true
	}
	g.out = append(g.out, tok)
	if len(g.out) >= g.max {
		return nil, nil, true
	}
	return []int{0}, []int64{tok}, false
}

func (g *greedy) tokens() []int64 { return g.out }
func (g *greedy) width() int      { return 1 }

// argmax returns the first index of the largest value, as torch.argmax.
func argmax(row []float32) int {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	return best
}

// beamSearch is transformers' beam search (BeamSearchScorer, as of the
// 4.33 release this export was made with): every step the 2*beams best
// continuations over all beams are ranked by summed log-probability; an EOS
// among the first `beams` of them closes a hypothesis, scored by its sum
// over length^lengthPenalty; the best non-EOS ones are the next beams. The
// search ends when `beams` hypotheses are closed and no running beam can
// beat the worst of them (or at once with earlyStopping), or after max
// tokens, when the running beams are closed too.
//
// The first step has one row, the start token; that equals transformers'
// trick of giving every beam but the first a score of -1e9, without
// computing the copies.
type beamSearch struct {
	beams         int
	eos           int64
	max           int
	lengthPenalty float64
	earlyStopping bool

	running  []hypothesis
	finished []hypothesis // at most beams, the best closed ones
	worst    float64      // the lowest score in finished, once it is full
}

type hypothesis struct {
	toks  []int64
	score float64 // running: summed log-probability; finished: normalised
}

func newBeamSearch(beams int, eos int64, maxTokens int, lengthPenalty float64, early bool) *beamSearch {
	return &beamSearch{beams: beams, eos: eos, max: maxTokens, lengthPenalty: lengthPenalty,
		earlyStopping: early, running: []hypothesis{{}}, worst: 1e9}
}

func (b *beamSearch) width() int { return b.beams }

type candidate struct {
	row   int
	tok   int64
	score float64
}

func (b *beamSearch) step(logits [][]float32) ([]int, []int64, bool) {
	// transformers' cur_len: the sequence so far, start token included.
	curLen := 1 + len(b.running[0].toks)
	k := 2 * b.beams
	// Each row's log-softmax and best tokens: a pass over the vocabulary,
	// the bulk of a beam step's work, spread over the cores.
	lse := make([]float64, len(logits))
	tops := make([][]scored, len(logits))
	parallel(len(logits), func(row int) {
		lse[row] = logSumExp(logits[row])
		tops[row] = topK(make([]scored, 0, k), logits[row], k)
	})
	cands := make([]candidate, 0, k*len(logits))
	for row, top := range tops {
		for _, t := range top {
			cands = append(cands, candidate{row: row, tok: int64(t.id), score: b.running[row].score + float64(t.v) - lse[row]})
		}
	}
	// Best first; ties keep row order, then token order.
	slices.SortStableFunc(cands, func(x, y candidate) int { return cmp.Compare(y.score, x.score) })
	cands = cands[:min(k, len(cands))]

	var (
		next    []hypothesis
		parents []int
		toks    []int64
	)
	for rank, c := range cands {
		if c.tok == b.eos {
			if rank < b.beams {
				b.close(b.running[c.row].toks, c.score)
			}
		} else {
			next = append(next, hypothesis{toks: append(slices.Clip(b.running[c.row].toks), c.tok), score: c.score})
			parents, toks = append(parents, c.row), append(toks, c.tok)
		}
		if len(next) == b.beams {
			break
		}
	}
	done := b.isDone(cands[0].score, curLen)
	b.running = next
	if done {
		return nil, nil, true
	}
	if len(next) == 0 || len(next[0].toks) >= b.max {
		for _, h := range next {
			b.close(h.toks, h.score)
		}
		return nil, nil, true
	}
	return parents, toks, false
}

// close adds a finished hypothesis; its length counts the start token.
func (b *beamSearch) close(toks []int64, sum float64) {
	score := sum / math.Pow(float64(1+len(toks)), b.lengthPenalty)
	if len(b.finished) >= b.beams && score <= b.worst {
		return
	}
	b.finished = append(b.finished, hypothesis{toks: toks, score: score})
	if len(b.finished) > b.beams {
		worst := 0
		for i, h := range b.finished {
			if h.score < b.finished[worst].score {
				worst = i
			}
		}
		b.finished = slices.Delete(b.finished, worst, worst+1)
		b.worst = b.finished[0].score
		for _, h := range b.finished {
			b.worst = min(b.worst, h.score)
		}
	} else {
		b.worst = min(b.worst, score)
	}
}

func (b *beamSearch) isDone(best float64, curLen int) bool {
	if len(b.finished) < b.beams {
		return false
	}
	if b.earlyStopping {
		return true
	}
	return b.worst >= best/math.Pow(float64(curLen), b.lengthPenalty)
}

func (b *beamSearch) tokens() []int64 {
	if len(b.finished) == 0 {
		return nil
	}
	best := b.finished[0]
	for _, h := range b.finished[1:] {
		if h.score > best.score {
			best = h
		}
	}
	return best.toks
}

// logSumExp is log(sum(exp(row))), computed around the maximum so it cannot
// overflow. Terms more than 30 below the maximum (each under 1e-13 of it,
// all of them together under 5e-9 for GPT-2's 50257) are skipped, which
// saves work on peaked logits.
func logSumExp(row []float32) float64 {
	m := row[argmax(row)]
	floor := m - 30
	var s0, s1 float64 // two sums, so consecutive adds do not wait on each other
	i := 0
	for ; i+1 < len(row); i += 2 {
		if v := row[i]; v > floor {
			s0 += expNonPositive(float64(v - m))
		}
		if v := row[i+1]; v > floor {
			s1 += expNonPositive(float64(v - m))
		}
	}
	if i < len(row) && row[i] > floor {
		s0 += expNonPositive(float64(row[i] - m))
	}
	return float64(m) + math.Log(s0+s1)
}

// exp2Table[j] is 2^(j/32).
var exp2Table = func() (t [32]float64) {
	for j := range t {
		t[j] = math.Exp2(float64(j) / 32)
	}
	return t
}()

// expNonPositive is e^x for -30 <= x <= 0 with a relative error under
// 1e-9: ranking beams needs no more, and it is about twice as fast as
// math.Exp, which matters at 50257 terms per beam per step. With
// x = (k/32) ln2 + r, |r| <= ln2/64, e^x = 2^(k>>5) * 2^((k&31)/32) * e^r,
// the middle factor from a table and e^r from its Taylor series to r^3.
func expNonPositive(x float64) float64 {
	const (
		scale = 32 / math.Ln2
		ln2hi = 6.93147180369123816490e-01 / 32 // ln2 split so k*ln2hi is exact
		ln2lo = 1.90821492927058770002e-10 / 32
	)
	k := int64(x*scale - 0.5) // round to nearest, for x <= 0
	fk := float64(k)
	r := (x - fk*ln2hi) - fk*ln2lo
	p := 1 + r*(1+r*(0.5+r*(1.0/6)))
	return p * exp2Table[k&31] * math.Float64frombits(uint64((k>>5)+1023)<<52)
}

type scored struct {
	id int
	v  float32
}

// topK appends the k largest values of row to dst, best first; ties keep
// the lower index first.
func topK(dst []scored, row []float32, k int) []scored {
	for i, v := range row {
		if len(dst) == k && v <= dst[k-1].v {
			continue
		}
		j := len(dst)
		if j < k {
			dst = append(dst, scored{})
		} else {
			j = k - 1
		}
		for j > 0 && dst[j-1].v < v {
			dst[j] = dst[j-1]
			j--
		}
		dst[j] = scored{id: i, v: v}
	}
	return dst
}

// parallel calls f(0) ... f(n-1) on up to GOMAXPROCS goroutines, the
// calling one included. The decoder's threads are idle while the searches
// run, so the cores are free.
func parallel(n int, f func(i int)) {
	workers := min(n, runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var next atomic.Int64
	work := func() {
		for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
			f(i)
		}
	}
	var wg recovered.Group
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}
