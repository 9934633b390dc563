package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// toyBPE is a hand-made model over "abc" whose merges overlap, so the order
// in which pairs merge matters.
func toyBPE(t testing.TB, cacheSize int) *bpe {
	t.Helper()
	vocab := map[string]int{}
	for b := 0; b < 256; b++ {
		vocab[string(byteRune[b])] = b
	}
	merges := [][2]string{{"a", "a"}, {"b", "c"}, {"aa", "a"}, {"a", "bc"}, {"aa", "bc"}, {"c", "a"}}
	for _, m := range merges {
		vocab[m[0]+m[1]] = len(vocab)
	}
	m, err := newBPE(vocab, merges, "", "", cacheSize)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tokens(m *bpe, ids []int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = m.tokens[id]
	}
	return out
}

func TestBPEMergeOrder(t *testing.T) {
	m := toyBPE(t, 0)
	for _, c := range []struct {
		word string
		want []string
	}{
		{"aaa", []string{"aaa"}}, // leftmost "a a" first; rightmost would end at "a" "aa"
		{"aaaa", []string{"aa", "aa"}},
		{"abc", []string{"abc"}},   // "b c" (rank 1) before "a bc" (rank 3)
		{"aabc", []string{"aabc"}}, // "a a", "b c", then "aa bc"
		{"cab", []string{"ca", "b"}},
		{"xyz", []string{"x", "y", "z"}},
	} {
		if got := tokens(m, m.appendWord(nil, c.word)); !slices.Equal(got, c.want) {
			t.Errorf("%q -> %q, want %q", c.word, got, c.want)
		}
	}
}

// The scan used for short words and the heap used for long ones must agree.
func TestBPEScanMatchesHeap(t *testing.T) {
	g := loadGPT2(t)
	models := []*bpe{toyBPE(t, 0), g.model, loadCLIP(t).model}
	r := rand.New(rand.NewPCG(5, 6))
	alphabet := []string{"a", "b", "c", "e", "t", "h", "in", "er", "ing", "q", "é", "日", "😀", "0", "!"}
	for i := range 3000 {
		var b strings.Builder
		for range 1 + r.IntN(scanMergeLimit) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		word := b.String()
		m := models[i%len(models)]
		init := m.initial(nil, word)
		scan := m.merge(slices.Clone(init[:min(len(init), scanMergeLimit)]))
		heap := m.mergeHeap(slices.Clone(init[:min(len(init), scanMergeLimit)]))
		if !slices.Equal(scan, heap) {
			t.Fatalf("%q: scan %v, heap %v", word, scan, heap)
		}
	}
}

// A huge space-free "word" must not go quadratic.
func TestBPELongWord(t *testing.T) {
	g := loadGPT2(t)
	word := strings.Repeat("abcdefghij", 20_000)
	start := time.Now()
	ids := g.Encode(word)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("200 kB word took %v", d)
	}
	if got := g.Decode(ids, DecodeOptions{}); got != word {
		t.Errorf("long word does not round-trip")
	}
}

func TestWordCacheBounded(t *testing.T) {
	c := newWordCache(160)
	for i := range 10_000 {
		c.put(fmt.Sprint("w", i), []int32{int32(i)})
	}
	if n := c.len(); n > 160 {
		t.Errorf("cache holds %d words, bound 160", n)
	}
	c.put("hello", []int32{1, 2})
	if ids, ok := c.get("hello"); !ok || !slices.Equal(ids, []int32{1, 2}) {
		t.Errorf("get after put = %v, %v", ids, ok)
	}
	long := strings.Repeat("x", maxCachedWordLen+1)
	c.put(long, []int32{1})
	if _, ok := c.get(long); ok {
		t.Error("over-long word was cached")
	}
	var nilCache *wordCache
	nilCache.put("a", nil)
	if _, ok := nilCache.get("a"); ok || nilCache.len() != 0 {
		t.Error("nil cache is not a no-op")
	}
}

// Run with -race: many goroutines hit, miss, fill and reset the same
// shards, and every answer must equal the uncached one.
func TestWordCacheConcurrent(t *testing.T) {
	cached := toyBPE(t, 64) // small, so shards keep resetting
	plain := toyBPE(t, 0)
	words := make([]string, 500)
	r := rand.New(rand.NewPCG(7, 8))
	for i := range words {
		var b strings.Builder
		for range 2 + r.IntN(12) {
			b.WriteByte("abcx"[r.IntN(4)])
		}
		words[i] = b.String()
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 4000 {
				w := words[(i*(g+1))%len(words)]
				if got, want := cached.appendWord(nil, w), plain.appendWord(nil, w); !slices.Equal(got, want) {
					errs <- fmt.Sprintf("%q: cached %v, plain %v", w, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// Whole tokenizers shared across goroutines must give the golden answers.
func TestTokenizersConcurrent(t *testing.T) {
	clip, gpt2 := loadCLIP(t), loadGPT2(t)
	var cg clipGolden
	var gg gpt2Golden
	readGolden(t, "clip_goldens.json", &cg)
	readGolden(t, "gpt2_goldens.json", &gg)
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for w := range 4 {
		wg.Go(func() {
			for i := range cg.Entries {
				e := cg.Entries[(i+w*97)%len(cg.Entries)]
				if d := diffIDs(clip.Encode(e.Text), e.IDs); d != "" {
					errs <- fmt.Sprintf("clip %q: %s", e.Text, d)
					return
				}
			}
		})
		wg.Go(func() {
			for i := range gg.Entries {
				e := gg.Entries[(i+w*89)%len(gg.Entries)]
				if d := diffIDs(gpt2.Encode(e.Text), e.IDs); d != "" {
					errs <- fmt.Sprintf("gpt2 %q: %s", e.Text, d)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
