package caption

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/imgserve/imgserve/inference"
	"github.com/imgserve/imgserve/internal/testmodels"
)

// uncached is the reference loop: every step feeds the whole sequence so
// far with an empty past, reads the last position's logits and takes the
// most likely token. It shares nothing with the batcher but the model.
func uncached(t *testing.T, p *Pipeline, hidden inference.Tensor, maxNew int) []int64 {
	t.Helper()
	sig := p.dec.sig
	seq := []int64{p.assets.DecoderStart}
	for len(seq)-1 < maxNew {
		in := make([]inference.Tensor, sig.inputs)
		in[sig.ids] = inference.NewTensor([]int64{1, int64(len(seq))}, seq)
		in[sig.encoder] = hidden
		empty := inference.Tensor{DType: inference.FP32, Shape: []int64{1, int64(sig.heads), 0, int64(sig.headSize)}}
		for l := range sig.layers {
			in[sig.pastKey[l]], in[sig.pastValue[l]] = empty, empty
		}
		in[sig.useCache] = inference.NewTensor([]int64{1}, []bool{false})
		out, err := p.dec.model.Infer(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		logits := out[sig.logits]
		if want := []int64{1, int64(len(seq)), synthVocab}; !slices.Equal(logits.Shape, want) {
			t.Fatalf("uncached logits %v, want %v", logits.Shape, want)
		}
		all := inference.Values[float32](logits)
		tok := int64(argmax(all[(len(seq)-1)*synthVocab:]))
		if tok == p.assets.EOS {
			break
		}
		seq = append(seq, tok)
	}
	return seq[1:]
}

// The KV-cached loop (one token per step, the previous present as past)
// generates exactly what the uncached loop does, and what the synthetic
// model's rule predicts from the encoder's actual output.
func TestCachedEqualsUncached(t *testing.T) {
	p := defaultPipeline(t)
	for _, c := range testImages {
		hidden := encode(t, p, c)
		got, err := p.Generate(context.Background(), hidden, Params{MaxNewTokens: 12})
		if err != nil {
			t.Fatal(err)
		}
		ref := uncached(t, p, hidden, 12)
		want := synthCaption(synthCode(hidden), 12)
		if !slices.Equal(got, ref) || !slices.Equal(got, want) {
			t.Errorf("colour %v: cached %v, uncached %v, rule %v", c, got, ref, want)
		}
		if len(got) < 3 {
			t.Errorf("colour %v: caption %v shorter than the rule's minimum of 3", c, got)
		}
	}
}

// EOS ends a caption before max_new_tokens, max_new_tokens ends it before
// EOS, and EOS never appears in the tokens.
func TestStopsAtEOSAndMaxNewTokens(t *testing.T) {
	p := defaultPipeline(t)
	lengths := map[int]bool{}
	for _, c := range testImages {
		hidden := encode(t, p, c)
		code := synthCode(hidden)
		n := int(3 + code%5) // the rule's length before EOS
		lengths[n] = true
		full, err := p.Generate(context.Background(), hidden, Params{MaxNewTokens: MaxNewTokensLimit})
		if err != nil {
			t.Fatal(err)
		}
		if len(full) != n || slices.Contains(full, synthEOS) {
			t.Errorf("colour %v: %d tokens %v, want %d before EOS", c, len(full), full, n)
		}
		for _, limit := range []int{1, 2, n - 1, n, n + 1} {
			got, err := p.Generate(context.Background(), hidden, Params{MaxNewTokens: limit})
			if err != nil {
				t.Fatal(err)
			}
			if want := full[:min(limit, n)]; !slices.Equal(got, want) {
				t.Errorf("colour %v, max_new_tokens %d: %v, want %v", c, limit, got, want)
			}
		}
	}
	if len(lengths) < 3 {
		t.Fatalf("test images cover caption lengths %v; want variety", lengths)
	}
}

// Beam search with one beam runs the beam algorithm (log-softmax scores,
// hypotheses closed at EOS) and yields the greedy caption. With more beams
// the synthetic model's greedy path is still the best (every other token
// costs 5 nats), so the caption is the same.
func TestBeamSearchMatchesGreedy(t *testing.T) {
	p := defaultPipeline(t)
	a := p.assets
	for _, c := range testImages {
		hidden := encode(t, p, c)
		for _, maxNew := range []int{2, 5, 16} {
			want, err := p.Generate(context.Background(), hidden, Params{MaxNewTokens: maxNew})
			if err != nil {
				t.Fatal(err)
			}
			one, err := p.dec.generate(context.Background(), hidden, a.DecoderStart,
				newBeamSearch(1, a.EOS, maxNew, a.LengthPenalty, a.EarlyStopping))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(one, want) {
				t.Errorf("colour %v, max %d: 1 beam %v, greedy %v", c, maxNew, one, want)
			}
			for _, beams := range []int{2, 4} {
				got, err := p.Generate(context.Background(), hidden, Params{MaxNewTokens: maxNew, NumBeams: beams})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Errorf("colour %v, max %d: %d beams %v, greedy %v", c, maxNew, beams, got, want)
				}
			}
		}
	}
}

// The cache geometry comes from the signature: the 2-layer model (4 heads
// of 16) decodes the same captions through caches of its own shape.
func TestTwoLayerDecoder(t *testing.T) {
	p := pipeline(t, testConfig(testmodels.CaptionDecoderSynth2Layer, "{max_batch_size: 1}", "{}"), nil)
	if l, h, d := p.Geometry(); l != 2 || h != 4 || d != 16 {
		t.Fatalf("geometry %d layers, %d heads, head size %d; want 2, 4, 16", l, h, d)
	}
	big := defaultPipeline(t)
	if l, h, d := big.Geometry(); l != 12 || h != 12 || d != 64 {
		t.Fatalf("geometry %d layers, %d heads, head size %d; want 12, 12, 64", l, h, d)
	}
	for _, c := range testImages {
		hidden := encode(t, p, c)
		got, err := p.Generate(context.Background(), hidden, Params{MaxNewTokens: 10, NumBeams: 2})
		if err != nil {
			t.Fatal(err)
		}
		if want := uncached(t, p, hidden, 10); !slices.Equal(got, want) {
			t.Errorf("colour %v: %v, uncached %v", c, got, want)
		}
	}
}

func TestParamsOutOfRange(t *testing.T) {
	p := defaultPipeline(t)
	hidden := encode(t, p, testImages[0])
	for _, bad := range []Params{{MaxNewTokens: -1}, {MaxNewTokens: MaxNewTokensLimit + 1}, {NumBeams: -2}, {NumBeams: MaxBeams + 1}} {
		if _, err := p.Generate(context.Background(), hidden, bad); !errors.Is(err, ErrBadParams) {
			t.Errorf("%+v: err %v, want ErrBadParams", bad, err)
		}
	}
	if _, err := p.Generate(context.Background(), inference.NewTensor([]int64{1, 3}, []float32{1, 2, 3}), Params{}); !errors.Is(err, ErrBadParams) {
		t.Errorf("a hidden state of the wrong shape: err %v, want ErrBadParams", err)
	}
}
