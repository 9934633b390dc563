package tokenizer

import (
	"testing"
)

// Prompts and captions of the kind the server sees.
var benchSentences = []string{
	"a photo of a cat",
	"A golden retriever puppy playing in the snow.",
	"an aerial photograph of a city at night, with lights reflecting on the river",
	"Two people riding bicycles down a tree-lined street in autumn.",
	"a bowl of ramen with a soft-boiled egg, green onions and chashu pork",
	"A black and white photo of an old lighthouse on a rocky coast during a storm.",
	"a diagram showing the parts of a plant cell",
	"Close-up portrait of a smiling elderly woman wearing a red scarf.",
}

func benchEncode(b *testing.B, encode func(string) []int) {
	b.Helper()
	tokens := 0
	for _, s := range benchSentences {
		tokens += len(encode(s))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		encode(benchSentences[i%len(benchSentences)])
	}
	perOp := float64(tokens) / float64(len(benchSentences))
	b.ReportMetric(perOp*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkCLIPEncode measures the steady state, where the word cache holds
// the vocabulary of the prompts.
func BenchmarkCLIPEncode(b *testing.B) {
	tok := loadCLIP(b)
	benchEncode(b, tok.Encode)
}

func BenchmarkGPT2Encode(b *testing.B) {
	tok := loadGPT2(b)
	benchEncode(b, tok.Encode)
}

// The NoCache variants run every word through the merge loop.
func BenchmarkCLIPEncodeNoCache(b *testing.B) {
	dir := shippedDir("clip")
	tok, err := LoadCLIPDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	tok.model.cache = nil
	benchEncode(b, tok.Encode)
}

func BenchmarkGPT2EncodeNoCache(b *testing.B) {
	dir := shippedDir("caption")
	tok, err := LoadGPT2Dir(dir)
	if err != nil {
		b.Fatal(err)
	}
	tok.model.cache = nil
	benchEncode(b, tok.Encode)
}

func BenchmarkGPT2Decode(b *testing.B) {
	tok := loadGPT2(b)
	ids := tok.Encode(benchSentences[3])
	b.ReportAllocs()
	for b.Loop() {
		tok.Decode(ids, DecodeOptions{SkipSpecialTokens: true, CleanUpTokenizationSpaces: true})
	}
}

func BenchmarkCLIPEncodeBatchFlat(b *testing.B) {
	tok := loadCLIP(b)
	b.ReportAllocs()
	for b.Loop() {
		tok.EncodeBatchFlat(benchSentences, CLIPContextLength)
	}
}

func BenchmarkLoadCLIP(b *testing.B) {
	dir := shippedDir("clip")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LoadCLIPDir(dir); err != nil {
			b.Fatal(err)
		}
	}
}
