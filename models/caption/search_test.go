package caption

import (
	"math"
	"slices"
	"testing"
)

// A toy language model over EOS=0, A=1, B=2, C=3, D=4: the probabilities of
// the next token after a history.
func toyModel(hist []int64) []float64 {
	p := []float64{0.99, 0, 0, 0, 0}
	switch {
	case len(hist) == 0:
		p = []float64{0.1, 0.5, 0.4, 0, 0}
	case slices.Equal(hist, []int64{1}):
		p = []float64{0.33, 0, 0, 0.34, 0.33}
	case slices.Equal(hist, []int64{2}):
		p = []float64{0.9, 0, 0, 0.1, 0}
	case len(hist) == 2:
		p = []float64{0.9, 0.1, 0, 0, 0}
	}
	return p
}

// runToy drives a search over the toy model, tracking each row's history
// through the parents the search returns, as the batcher tracks caches.
func runToy(t *testing.T, s search) []int64 {
	t.Helper()
	hists := [][]int64{{}}
	for range 10 {
		logits := make([][]float32, len(hists))
		for i, h := range hists {
			for _, p := range toyModel(h) {
				logits[i] = append(logits[i], float32(math.Log(max(p, 1e-9))))
			}
		}
		parents, next, done := s.step(logits)
		if done {
			return s.tokens()
		}
		var nh [][]int64
		for i, p := range parents {
			nh = append(nh, append(slices.Clone(hists[p]), next[i]))
		}
		hists = nh
	}
	t.Fatal("search did not end")
	return nil
}

// Greedy follows A (0.5) and then C (0.34): P(A C EOS) = 0.153. Beam search
// with two beams keeps B alive and finds B EOS, P = 0.36, scored by
// transformers' rule as log(0.36)/2 against log(0.153)/3; the A C caption
// closes too, and with both hypotheses in, no running beam can win.
func TestBeamSearchBeatsGreedy(t *testing.T) {
	if got := runToy(t, &greedy{eos: 0, max: 10}); !slices.Equal(got, []int64{1, 3}) {
		t.Errorf("greedy %v, want [1 3]", got)
	}
	if got := runToy(t, newBeamSearch(1, 0, 10, 1, false)); !slices.Equal(got, []int64{1, 3}) {
		t.Errorf("one beam %v, want greedy's [1 3]", got)
	}
	b := newBeamSearch(2, 0, 10, 1, false)
	if got := runToy(t, b); !slices.Equal(got, []int64{2}) {
		t.Errorf("two beams %v, want [2]", got)
	}
	want := []float64{(math.Log(0.4) + math.Log(0.9)) / 2, (math.Log(0.5) + math.Log(0.34) + math.Log(0.9)) / 3}
	var scores []float64
	for _, h := range b.finished {
		scores = append(scores, h.score)
	}
	slices.Sort(scores)
	slices.Reverse(scores)
	if len(scores) != 2 || math.Abs(scores[0]-want[0]) > 1e-5 || math.Abs(scores[1]-want[1]) > 1e-5 {
		t.Errorf("finished scores %v, want %v", scores, want)
	}
}

// At max tokens the running beams close too, and the best hypothesis wins
// whether it ended with EOS or not.
func TestBeamSearchMaxTokens(t *testing.T) {
	if got := runToy(t, newBeamSearch(2, 0, 1, 1, false)); !slices.Equal(got, []int64{1}) {
		t.Errorf("one token, two beams: %v, want [1]", got)
	}
	if got := runToy(t, &greedy{eos: 0, max: 1}); !slices.Equal(got, []int64{1}) {
		t.Errorf("one token, greedy: %v, want [1]", got)
	}
}

// A length penalty of 0 ranks by summed log-probability alone; with early
// stopping the search ends once num_beams hypotheses are closed.
func TestBeamSearchSettings(t *testing.T) {
	b := newBeamSearch(2, 0, 10, 0, true)
	if got := runToy(t, b); !slices.Equal(got, []int64{2}) {
		t.Errorf("got %v, want [2]", got)
	}
	if len(b.finished) != 2 {
		t.Errorf("%d hypotheses closed, want 2", len(b.finished))
	}
}

func TestTopKAndLogSumExp(t *testing.T) {
	row := []float32{1, 5, 3, 5, -2, 4}
	got := topK(nil, row, 3)
	want := []scored{{1, 5}, {3, 5}, {5, 4}}
	if !slices.Equal(got, want) {
		t.Errorf("topK %v, want %v", got, want)
	}
	if got := topK(nil, row, 10); len(got) != len(row) || got[len(got)-1] != (scored{4, -2}) {
		t.Errorf("topK beyond the row: %v", got)
	}
	var sum float64
	for _, v := range row {
		sum += math.Exp(float64(v))
	}
	if got := logSumExp(row); math.Abs(got-math.Log(sum)) > 1e-8 {
		t.Errorf("logSumExp %v, want %v", got, math.Log(sum))
	}
	if got := logSumExp([]float32{1000, 1000}); math.Abs(got-(1000+math.Ln2)) > 1e-9 {
		t.Errorf("logSumExp overflows: %v", got)
	}
	if got := argmax([]float32{2, 7, 7, 1}); got != 1 {
		t.Errorf("argmax %d, want the first maximum, 1", got)
	}
}

func TestExpNonPositive(t *testing.T) {
	worst := 0.0
	for i := 0; i <= 300000; i++ {
		x := -30 * float64(i) / 300000
		want := math.Exp(x)
		worst = max(worst, math.Abs(expNonPositive(x)-want)/want)
	}
	if worst > 1e-9 {
		t.Errorf("relative error up to %g", worst)
	}
}
