package tokenizer

import (
	"fmt"
	"math"
	"slices"
)

// bpe is the byte-level BPE model shared by the CLIP and GPT-2 tokenizers:
// it turns one pre-token (raw bytes) into vocabulary ids. It is immutable
// after construction apart from its cache, so one value serves concurrent
// callers.
type bpe struct {
	vocab  map[string]int
	tokens []string // id -> token; "" where the id is unused

	// merges maps a pair of symbol ids to the merge's rank and result id.
	// Keying by ids rather than strings lets the merge loop run on int32s
	// without building candidate strings, as the Rust crate does.
	merges map[uint64]bpeMerge

	// first[b] and last[b] are the initial symbols for byte b inside a word
	// and as its last byte (where end_of_word_suffix, CLIP's "</w>", is
	// attached). -1 means the byte has no token and no unk exists: skip it.
	first, last [256]int32

	cache *wordCache
}

type bpeMerge struct{ rank, id int32 }

const noRank = math.MaxInt32

// scanMergeLimit is the word length (in initial symbols) up to which the
// quadratic scan is used; it beats the heap's bookkeeping on real words,
// while the heap keeps a megabyte-long "word" from taking hours.
const scanMergeLimit = 64

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// newBPE builds the model. merges are in priority order (rank = index).
// suffix is appended to a word's last symbol; unk names the token used for
// a byte with no vocabulary entry ("" to drop such bytes).
func newBPE(vocab map[string]int, merges [][2]string, suffix, unk string, cacheSize int) (*bpe, error) {
	m := &bpe{
		vocab:  vocab,
		merges: make(map[uint64]bpeMerge, len(merges)),
		cache:  newWordCache(cacheSize),
	}
	size := 0
	for tok, id := range vocab {
		if id < 0 || id > math.MaxInt32-1 {
			return nil, fmt.Errorf("token %q has id %d out of range", tok, id)
		}
		size = max(size, id+1)
	}
	m.tokens = make([]string, size)
	for tok, id := range vocab {
		if m.tokens[id] != "" {
			return nil, fmt.Errorf("id %d is used by both %q and %q", id, m.tokens[id], tok)
		}
		m.tokens[id] = tok
	}

	unkID := int32(-1)
	if unk != "" {
		id, ok := vocab[unk]
		if !ok {
			return nil, fmt.Errorf("unk token %q is not in the vocabulary", unk)
		}
		unkID = int32(id)
	}
	for b := 0; b < 256; b++ {
		s := string(byteRune[b])
		m.first[b], m.last[b] = unkID, unkID
		if id, ok := vocab[s]; ok {
			m.first[b] = int32(id)
		}
		if id, ok := vocab[s+suffix]; ok {
			m.last[b] = int32(id)
		}
	}

	for rank, mg := range merges {
		a, okA := vocab[mg[0]]
		b, okB := vocab[mg[1]]
		n, okN := vocab[mg[0]+mg[1]]
		if !okA || !okB || !okN {
			return nil, fmt.Errorf("merge %d (%q %q) uses a token missing from the vocabulary", rank+1, mg[0], mg[1])
		}
		k := pairKey(int32(a), int32(b))
		// A repeated pair keeps its first (best) rank, as in the Rust crate
		// where later duplicates could never fire anyway.
		if _, dup := m.merges[k]; !dup {
			m.merges[k] = bpeMerge{rank: int32(rank), id: int32(n)}
		}
	}
	return m, nil
}

// appendWord appends the ids of one pre-token, given as raw bytes.
func (m *bpe) appendWord(dst []int, word string) []int {
	switch len(word) {
	case 0:
		return dst
	case 1:
		if id := m.last[word[0]]; id >= 0 {
			dst = append(dst, int(id))
		}
		return dst
	}
	if ids, ok := m.cache.get(word); ok {
		return appendIDs(dst, ids)
	}
	var buf [32]int32
	syms := m.merge(m.initial(buf[:0], word))
	if m.cache != nil && len(word) <= maxCachedWordLen {
		m.cache.put(word, slices.Clone(syms))
	}
	return appendIDs(dst, syms)
}

func appendIDs(dst []int, ids []int32) []int {
	for _, id := range ids {
		dst = append(dst, int(id))
	}
	return dst
}

func (m *bpe) initial(dst []int32, word string) []int32 {
	n := len(word) - 1
	for i := 0; i < n; i++ {
		if id := m.first[word[i]]; id >= 0 {
			dst = append(dst, id)
		}
	}
	if id := m.last[word[n]]; id >= 0 {
		dst = append(dst, id)
	}
	return dst
}

func (m *bpe) lookup(a, b int32) bpeMerge {
	if mg, ok := m.merges[pairKey(a, b)]; ok {
		return mg
	}
	return bpeMerge{rank: noRank}
}

// merge applies merges in place. Like the Rust crate it always applies the
// lowest-ranked pair present, leftmost first, one pair at a time (not
// "every occurrence of the best pair" as the original Python did; the two
// differ only for merge tables that a trainer cannot produce).
func (m *bpe) merge(s []int32) []int32 {
	if len(s) < 2 {
		return s
	}
	if len(s) > scanMergeLimit {
		return m.mergeHeap(s)
	}
	var buf [scanMergeLimit - 1]bpeMerge
	pairs := buf[:len(s)-1]
	for i := range pairs {
		pairs[i] = m.lookup(s[i], s[i+1])
	}
	for {
		best := -1
		bestRank := int32(noRank)
		for i, p := range pairs {
			if p.rank < bestRank {
				best, bestRank = i, p.rank
			}
		}
		if best < 0 {
			return s
		}
		s[best] = pairs[best].id
		s = slices.Delete(s, best+1, best+2)
		pairs = slices.Delete(pairs, best, best+1)
		if best > 0 {
			pairs[best-1] = m.lookup(s[best-1], s[best])
		}
		if best < len(pairs) {
			pairs[best] = m.lookup(s[best], s[best+1])
		}
	}
}

// mergeHeap is the Rust crate's algorithm: a doubly linked list of symbols
// and a min-heap of candidate merges ordered by (rank, position), with stale
// candidates skipped when popped. It gives the same result as the scan.
func (m *bpe) mergeHeap(s []int32) []int32 {
	n := len(s)
	prev := make([]int32, n)
	next := make([]int32, n)
	dead := make([]bool, n)
	for i := range n {
		prev[i], next[i] = int32(i-1), int32(i+1)
	}
	next[n-1] = -1
	h := make(mergeHeap, 0, n)
	for i := 0; i < n-1; i++ {
		if mg := m.lookup(s[i], s[i+1]); mg.rank != noRank {
			h.push(mergeCand{mg.rank, int32(i), mg.id})
		}
	}
	for len(h) > 0 {
		c := h.pop()
		p := c.pos
		q := next[p]
		if dead[p] || q < 0 {
			continue
		}
		// The pair at p may have changed since c was pushed; a changed pair
		// concatenates to a different string, so comparing ids suffices.
		if mg := m.lookup(s[p], s[q]); mg.rank == noRank || mg.id != c.id {
			continue
		}
		s[p] = c.id
		dead[q] = true
		next[p] = next[q]
		if next[q] >= 0 {
			prev[next[q]] = p
		}
		if l := prev[p]; l >= 0 {
			if mg := m.lookup(s[l], s[p]); mg.rank != noRank {
				h.push(mergeCand{mg.rank, l, mg.id})
			}
		}
		if r := next[p]; r >= 0 {
			if mg := m.lookup(s[p], s[r]); mg.rank != noRank {
				h.push(mergeCand{mg.rank, p, mg.id})
			}
		}
	}
	out := s[:0]
	for i := int32(0); i >= 0; i = next[i] {
		out = append(out, s[i])
	}
	return out
}

type mergeCand struct{ rank, pos, id int32 }

func (a mergeCand) less(b mergeCand) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}

// mergeHeap is a binary min-heap; container/heap would box every element.
type mergeHeap []mergeCand

func (h *mergeHeap) push(c mergeCand) {
	*h = append(*h, c)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *mergeHeap) pop() mergeCand {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, r, small := 2*i+1, 2*i+2, i
		if l < len(s) && s[l].less(s[small]) {
			small = l
		}
		if r < len(s) && s[r].less(s[small]) {
			small = r
		}
		if small == i {
			break
		}
		s[i], s[small] = s[small], s[i]
		i = small
	}
	*h = s
	return top
}
