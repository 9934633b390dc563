package index

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
)

// graph is a Hierarchical Navigable Small World graph (Malkov and
// Yashunin, 2016) over a collection's slots, built incrementally as items
// arrive. It follows hnswlib's algorithm: levels drawn with probability
// 1/M per level, a beam search of width ef_construction to find a new
// node's neighbours, the neighbour-selection heuristic, and pruning of a
// neighbour's list by the same heuristic when it overflows.
//
// The links of slot s at level 0 are links0[s*(1+m0):]: a count followed by
// up to m0 slot numbers; upper levels live in upper[s]. Every word is read
// and written atomically: searches and inserts run together under the
// collection's read lock, and a writer holds the stripe lock of the node
// whose list it changes. A reader may see a list half rewritten; every
// value it can see is a slot that was published before being linked, which
// is all a search needs.
//
// Deleted items stay in the graph as tombstones that searches walk through
// but never return, as in hnswlib. Their slots are reused by later inserts
// (under the collection's write lock): the reused node gets new links, and
// links that pointed to the old item now lead to the new one, which costs a
// little recall after heavy churn but keeps memory bounded by the peak
// item count.
type graph struct {
	m, m0 int
	efC   int
	mult  float64 // 1/ln(M), the level distribution's scale

	links0 []uint32
	upper  [][]uint32
	levels []uint8

	entry atomic.Uint64 // slot | level<<32, or noEntry
	epMu  sync.Mutex    // held by an insert that raises the top level
	locks [lockStripes]sync.Mutex
	draws atomic.Uint64

	searchers sync.Pool
}

const (
	noEntry     = math.MaxUint64
	lockStripes = 1 << 12
	maxLevel    = 16
)

func newGraph(p Params) *graph {
	g := &graph{m: p.M, m0: 2 * p.M, efC: p.EfConstruction, mult: 1 / math.Log(float64(p.M))}
	g.entry.Store(noEntry)
	return g
}

// slotBytes is the graph's memory per slot: level-0 links, the upper
// lists' header and (on average, 1/M of nodes per level) their links.
func (g *graph) slotBytes() int64 {
	return int64(4*(1+g.m0)+24+1) + int64(4*(1+g.m))/int64(g.m-1)
}

func (g *graph) grow(used, n int) {
	g.links0 = slices.Grow(g.links0[:used*(1+g.m0)], (n-used)*(1+g.m0))[:n*(1+g.m0)]
	g.upper = slices.Grow(g.upper[:used], n-used)[:n]
	g.levels = slices.Grow(g.levels[:used], n-used)[:n]
}

func (g *graph) isEntry(s uint32) bool {
	e := g.entry.Load()
	return e != noEntry && uint32(e) == s
}

// reset prepares a slot's links before it is inserted: a new slot draws a
// level; a reused one keeps its level (and upper arrays) and drops its
// links. Caller holds the collection's alloc lock.
func (g *graph) reset(s uint32, reuse bool) {
	if reuse {
		for l := 0; l <= int(g.levels[s]); l++ {
			atomic.StoreUint32(&g.list(s, l)[0], 0)
		}
		return
	}
	level := g.drawLevel()
	g.levels[s] = uint8(level)
	g.upper[s] = nil
	if level > 0 {
		g.upper[s] = make([]uint32, level*(1+g.m))
	}
	atomic.StoreUint32(&g.links0[int(s)*(1+g.m0)], 0)
}

// drawLevel returns floor(-ln(u) / ln(M)) for u uniform in (0, 1], from a
// counter hashed with SplitMix64: deterministic for a given insert order,
// which makes builds reproducible.
func (g *graph) drawLevel() int {
	x := g.draws.Add(0x9e3779b97f4a7c15)
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	u := (float64(x>>11) + 1) / (1 << 53)
	return min(int(-math.Log(u)*g.mult), maxLevel)
}

// list returns a slot's links at a level: the count, then the slots.
func (g *graph) list(s uint32, l int) []uint32 {
	if l == 0 {
		w := 1 + g.m0
		return g.links0[int(s)*w : int(s+1)*w]
	}
	w := 1 + g.m
	return g.upper[s][(l-1)*w : l*w]
}

// neighbours appends the slots a list names to buf.
func neighbours(list []uint32, buf []uint32) []uint32 {
	n := min(int(atomic.LoadUint32(&list[0])), len(list)-1)
	for i := 1; i <= n; i++ {
		buf = append(buf, atomic.LoadUint32(&list[i]))
	}
	return buf
}

func (g *graph) lock(s uint32) *sync.Mutex { return &g.locks[s&(lockStripes-1)] }

// insert links slot x, whose unit vector is q, into the graph. Caller holds
// the collection's mu (for reading, or for writing when x reuses a slot),
// and x's data and state are published.
func (g *graph) insert(c *Collection, x uint32, q []float32) {
	level := int(g.levels[x])
	e := g.entry.Load()
	if e == noEntry {
		g.epMu.Lock()
		if e = g.entry.Load(); e == noEntry {
			g.entry.Store(uint64(x) | uint64(level)<<32)
			g.epMu.Unlock()
			return
		}
		g.epMu.Unlock()
	}
	if level > int(e>>32) {
		// Only one insert at a time may raise the top level; the others
		// that would raise it wait here, as in hnswlib.
		g.epMu.Lock()
		defer g.epMu.Unlock()
		e = g.entry.Load()
	}
	top, ep := int(e>>32), uint32(e)
	s := g.searcher(c)
	defer g.searchers.Put(s)

	cur, curS := ep, c.score(q, ep)
	for l := top; l > level; l-- {
		cur, curS = g.greedy(c, q, cur, curS, l, s)
	}
	for l := min(level, top); l >= 0; l-- {
		w := s.layer(g, c, q, cur, curS, g.efC, l, x)
		if len(w) == 0 {
			continue // every node seen is a tombstone; keep descending
		}
		slices.SortFunc(w, func(a, b cand) int { return cmpScore(b.score, a.score) })
		cur, curS = uint32(w[0].row), w[0].score
		mmax := g.m
		if l == 0 {
			mmax = g.m0
		}
		// Copied: link's pruning reuses the heuristic's buffer.
		sel := append(s.out[:0], g.selectNeighbours(c, w, g.m, s)...)
		s.out = sel
		lk := g.lock(x)
		lk.Lock()
		list := g.list(x, l)
		for i, n := range sel {
			atomic.StoreUint32(&list[1+i], uint32(n.row))
		}
		atomic.StoreUint32(&list[0], uint32(len(sel)))
		lk.Unlock()
		for _, n := range sel {
			g.link(c, uint32(n.row), x, l, mmax, s)
		}
	}
	if level > top {
		g.entry.Store(uint64(x) | uint64(level)<<32)
	}
}

func cmpScore(a, b float32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// link adds x to n's list at level l, pruning the list with the heuristic
// when it is full.
func (g *graph) link(c *Collection, n, x uint32, l, mmax int, s *searcher) {
	lk := g.lock(n)
	lk.Lock()
	defer lk.Unlock()
	list := g.list(n, l)
	cnt := min(int(atomic.LoadUint32(&list[0])), mmax)
	for i := 1; i <= cnt; i++ {
		if atomic.LoadUint32(&list[i]) == x {
			return
		}
	}
	if cnt < mmax {
		atomic.StoreUint32(&list[1+cnt], x)
		atomic.StoreUint32(&list[0], uint32(cnt+1))
		return
	}
	cands := s.prune[:0]
	cands = append(cands, cand{c.pairScore(n, x), int32(x)})
	for i := 1; i <= cnt; i++ {
		y := atomic.LoadUint32(&list[i])
		cands = append(cands, cand{c.pairScore(n, y), int32(y)})
	}
	slices.SortFunc(cands, func(a, b cand) int { return cmpScore(b.score, a.score) })
	sel := g.selectNeighbours(c, cands, mmax, s)
	for i, y := range sel {
		atomic.StoreUint32(&list[1+i], uint32(y.row))
	}
	atomic.StoreUint32(&list[0], uint32(len(sel)))
	s.prune = cands[:0]
}

// selectNeighbours is hnswlib's heuristic: going through the candidates
// best first (w is sorted so), keep one only if it is closer to the base
// than to every one kept so far, up to m. It favours neighbours in
// different directions, which keeps clusters connected to each other.
func (g *graph) selectNeighbours(c *Collection, w []cand, m int, s *searcher) []cand {
	if len(w) <= m {
		return append(s.sel[:0], w...)
	}
	sel := s.sel[:0]
	for _, x := range w {
		good := true
		for _, y := range sel {
			if c.pairScore(uint32(x.row), uint32(y.row)) > x.score {
				good = false
				break
			}
		}
		if good {
			sel = append(sel, x)
			if len(sel) == m {
				break
			}
		}
	}
	s.sel = sel
	return sel
}

// greedy walks level l from cur to the node nearest q it can reach by
// single steps.
func (g *graph) greedy(c *Collection, q []float32, cur uint32, curS float32, l int, s *searcher) (uint32, float32) {
	for changed := true; changed; {
		changed = false
		s.buf = neighbours(g.list(cur, l), s.buf[:0])
		for _, n := range s.buf {
			c.prefetch(n)
		}
		for _, n := range s.buf {
			if sc := c.score(q, n); sc > curS {
				cur, curS, changed = n, sc, true
			}
		}
	}
	return cur, curS
}

// search returns up to k live slots nearest q, best first, equal scores by
// ascending id, from a beam search of width ef at level 0.
func (g *graph) search(c *Collection, q []float32, k, ef int) []cand {
	e := g.entry.Load()
	if e == noEntry {
		return nil
	}
	s := g.searcher(c)
	defer g.searchers.Put(s)
	cur := uint32(e)
	curS := c.score(q, cur)
	for l := int(e >> 32); l > 0; l-- {
		cur, curS = g.greedy(c, q, cur, curS, l, s)
	}
	w := s.layer(g, c, q, cur, curS, ef, 0, noSlot)
	if c.codes != nil {
		// Re-rank the candidates with the residuals (see quantize).
		for i := range w {
			w[i].score = c.fineScore(q, uint32(w[i].row))
		}
	}
	slices.SortFunc(w, func(a, b cand) int {
		if r := cmpScore(b.score, a.score); r != 0 {
			return r
		}
		return cmpString(c.ids[a.row], c.ids[b.row])
	})
	return append([]cand(nil), w[:min(k, len(w))]...)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

const noSlot = math.MaxUint32

// searcher holds one search's scratch space, pooled per graph: the visited
// marks (a generation number per slot, so clearing is O(1)), the two heaps
// and buffers.
type searcher struct {
	marks []uint16
	gen   uint16
	cands []cand // max-heap: the frontier, best first
	top   []cand // min-heap: the ef best live slots, worst first
	buf   []uint32
	prune []cand
	sel   []cand
	out   []cand
}

func (g *graph) searcher(c *Collection) *searcher {
	s, _ := g.searchers.Get().(*searcher)
	if s == nil {
		s = &searcher{}
	}
	if len(s.marks) < len(c.ids) {
		s.marks = make([]uint16, len(c.ids))
		s.gen = 0
	}
	return s
}

// layer is the beam search at level l from ep: it returns (in heap order)
// the ef best live slots it finds, never exclude. Tombstones are walked
// through but not returned.
func (s *searcher) layer(g *graph, c *Collection, q []float32, ep uint32, epS float32, ef, l int, exclude uint32) []cand {
	s.gen++
	if s.gen == 0 {
		clear(s.marks)
		s.gen = 1
	}
	s.cands, s.top = s.cands[:0], s.top[:0]
	s.marks[ep] = s.gen
	s.cands = pushMax(s.cands, cand{epS, int32(ep)})
	if ep != exclude && c.live(ep) {
		s.top = pushMin(s.top, cand{epS, int32(ep)})
	}
	lower := float32(math.Inf(-1))
	if len(s.top) > 0 {
		lower = s.top[0].score
	}
	for len(s.cands) > 0 {
		best := s.cands[0]
		if best.score < lower && len(s.top) >= ef {
			break
		}
		s.cands = popMax(s.cands)
		list := g.list(uint32(best.row), l)
		buf := s.buf[:0]
		n := min(int(atomic.LoadUint32(&list[0])), len(list)-1)
		for i := 1; i <= n; i++ {
			y := atomic.LoadUint32(&list[i])
			if s.marks[y] == s.gen {
				continue
			}
			s.marks[y] = s.gen
			c.prefetch(y)
			buf = append(buf, y)
		}
		for _, y := range buf {
			sc := c.score(q, y)
			if len(s.top) < ef || sc > lower {
				s.cands = pushMax(s.cands, cand{sc, int32(y)})
				if y != exclude && c.live(y) {
					s.top = pushMin(s.top, cand{sc, int32(y)})
					if len(s.top) > ef {
						s.top = popMin(s.top)
					}
				}
				if len(s.top) > 0 {
					lower = s.top[0].score
				}
			}
		}
		s.buf = buf
	}
	return s.top
}

func pushMax(h []cand, x cand) []cand {
	h = append(h, x)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[p].score >= x.score {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = x
	return h
}

func popMax(h []cand) []cand {
	n := len(h) - 1
	x := h[n]
	h = h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		if r := l + 1; r < n && h[r].score > h[l].score {
			l = r
		}
		if h[l].score <= x.score {
			break
		}
		h[i] = h[l]
		i = l
	}
	if n > 0 {
		h[i] = x
	}
	return h
}

func pushMin(h []cand, x cand) []cand {
	h = append(h, x)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[p].score <= x.score {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = x
	return h
}

func popMin(h []cand) []cand {
	n := len(h) - 1
	x := h[n]
	h = h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		if r := l + 1; r < n && h[r].score < h[l].score {
			l = r
		}
		if h[l].score >= x.score {
			break
		}
		h[i] = h[l]
		i = l
	}
	if n > 0 {
		h[i] = x
	}
	return h
}
