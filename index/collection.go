package index

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/imgserve/imgserve/internal/recovered"
)

// Limits. They bound the memory one request can pin and keep snapshot
// records small enough for fixed-width length fields.
const (
	// MaxDim is the largest vector dimension a collection accepts.
	MaxDim = 8192
	// MaxK is the largest k Search accepts.
	MaxK = 1000
	// MaxIDBytes is the longest id, in bytes.
	MaxIDBytes = 512
	// MaxMetadataBytes is the largest metadata document, in bytes.
	MaxMetadataBytes = 4096
)

// parallelMinRows is the collection size above which an exact search splits
// the scan across GOMAXPROCS goroutines. Below it a search takes a few
// milliseconds at most and goroutine start-up and the extra heaps would
// cost more than they save. A variable so tests can exercise the sharded
// path cheaply.
var parallelMinRows = 32 * 1024

// maxSlots bounds a collection's slots: rows are int32 in candidates.
const maxSlots = math.MaxInt32

var errFull = errors.New("index: collection full")

// Slot states. A slot is written while unpublished (slotEmpty), then
// published (slotLive); deleting it leaves a tombstone (slotDeleted) that
// graph searches still walk through until the slot is reused.
const (
	slotEmpty uint32 = iota
	slotLive
	slotDeleted
)

// Hit is one search result.
type Hit struct {
	ID    string  `json:"id"`
	Score float32 `json:"score"` // cosine similarity in [-1, 1]
	// Metadata is a copy of the item's metadata, nil if it has none.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// Item is one entry for UpsertBatch.
type Item struct {
	ID       string
	Vector   []float32
	Metadata json.RawMessage
}

// Collection is a set of items with vectors of one fixed dimension.
//
// Items live in numbered slots whose number never changes while the item
// lives: slot i's vector is vecs[i*dim:(i+1)*dim] (or codes and scale[i]
// for int8 storage) and its id and metadata are ids[i] and meta[i], so a
// scan streams one flat array and graph links are plain slot numbers.
// Replacing or deleting an item leaves a tombstone whose slot a later
// insert reuses.
//
// Locking, from the outside in:
//   - mu: searches and ordinary writes hold it for reading, so they run
//     together; growing the arrays, reusing a tombstone's slot and
//     snapshots hold it for writing.
//   - alloc: the id map, the free list and counters, and the writing of a
//     slot's data. Held for O(dim) per write.
//   - the graph's own locks (see hnsw.go).
//
// A slot's data is written before its state turns live (an atomic store),
// and a new node is linked into the graph after that, so readers that find
// a slot through its state or a link always see it whole.
type Collection struct {
	dim    int
	params Params

	mu sync.RWMutex

	alloc   sync.Mutex
	rows    map[string]uint32
	free    []uint32
	count   int
	dropped bool // set when the store deletes the collection
	store   *Store
	name    string

	used  atomic.Uint32 // slots handed out
	state []atomic.Uint32

	vecs  []float32 // float32 storage
	codes []int8    // int8 storage
	resid []uint8   // int8 storage: 4-bit residuals, two per byte
	scale []float32 // int8 storage: code i*scale is the component
	ids   []string
	meta  []json.RawMessage

	g *graph // nil for a flat index
}

// NewCollection returns an empty collection for vectors of length dim
// (1..MaxDim) with default parameters.
func NewCollection(dim int) (*Collection, error) {
	return NewCollectionParams(dim, Params{})
}

// NewCollectionParams returns an empty collection with the given index
// parameters (zero fields take their defaults).
func NewCollectionParams(dim int, p Params) (*Collection, error) {
	if dim < 1 || dim > MaxDim {
		return nil, fmt.Errorf("%w: dimension %d not in 1..%d", ErrDimension, dim, MaxDim)
	}
	p, err := p.Normalize()
	if err != nil {
		return nil, err
	}
	c := &Collection{dim: dim, params: p, rows: make(map[string]uint32)}
	if p.Index == IndexHNSW {
		c.g = newGraph(p)
	}
	return c, nil
}

// Dim returns the vector dimension.
func (c *Collection) Dim() int { return c.dim }

// Params returns the collection's index parameters.
func (c *Collection) Params() Params { return c.params }

// Len returns the number of items.
func (c *Collection) Len() int {
	c.alloc.Lock()
	defer c.alloc.Unlock()
	return c.count
}

// Grow reserves room for n more items, so that bulk loads of a known size
// do not pay for repeated reallocation.
func (c *Collection) Grow(n int) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.alloc.Lock()
	need := int(c.used.Load()) + max(0, n-len(c.free))
	c.alloc.Unlock()
	if need > len(c.ids) {
		c.realloc(min(need, maxSlots))
	}
}

// realloc moves the slots into arrays of n (>= used) slots. Caller holds
// mu for writing.
func (c *Collection) realloc(n int) {
	used := int(c.used.Load())
	state := make([]atomic.Uint32, n)
	for i := range used {
		state[i].Store(c.state[i].Load())
	}
	c.state = state
	if c.params.Storage == StorageInt8 {
		c.codes = slices.Grow(c.codes[:used*c.dim], (n-used)*c.dim)[:n*c.dim]
		rb := residBytes(c.dim)
		c.resid = slices.Grow(c.resid[:used*rb], (n-used)*rb)[:n*rb]
		c.scale = slices.Grow(c.scale[:used], n-used)[:n]
	} else {
		c.vecs = slices.Grow(c.vecs[:used*c.dim], (n-used)*c.dim)[:n*c.dim]
	}
	c.ids = slices.Grow(c.ids[:used], n-used)[:n]
	c.meta = slices.Grow(c.meta[:used], n-used)[:n]
	if c.g != nil {
		c.g.grow(used, n)
	}
}

// Upsert inserts the item, or replaces the vector and metadata of the item
// with the same id. vec need not be unit length; a normalised copy is
// stored. meta may be nil; otherwise it must be valid JSON of at most
// MaxMetadataBytes and is copied.
func (c *Collection) Upsert(id string, vec []float32, meta json.RawMessage) error {
	row := make([]float32, c.dim)
	m, err := c.prepare(id, vec, meta, row)
	if err != nil {
		return err
	}
	return c.put(id, row, m, true)
}

// UpsertBatch validates every item first and inserts none if any is
// invalid, so a bad item never leaves a half-applied batch. Later items win
// over earlier ones with the same id.
func (c *Collection) UpsertBatch(items []Item) error {
	rows := make([]float32, len(items)*c.dim)
	metas := make([]json.RawMessage, len(items))
	for i, it := range items {
		m, err := c.prepare(it.ID, it.Vector, it.Metadata, rows[i*c.dim:(i+1)*c.dim])
		if err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
		metas[i] = m
	}
	for i, it := range items {
		if err := c.put(it.ID, rows[i*c.dim:(i+1)*c.dim], metas[i], true); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	return nil
}

// prepare validates an item, writes the normalised vector into row and
// returns a private copy of meta.
func (c *Collection) prepare(id string, vec []float32, meta json.RawMessage, row []float32) (json.RawMessage, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if len(vec) != c.dim {
		return nil, fmt.Errorf("%w: got %d, collection has %d", ErrDimension, len(vec), c.dim)
	}
	if err := normalize(row, vec); err != nil {
		return nil, err
	}
	return copyMeta(meta)
}

// PrepareItem validates an item as Upsert does and returns its unit
// vector and a private copy of its metadata (nil for none), for backends
// that store items elsewhere.
func PrepareItem(it Item) ([]float32, json.RawMessage, error) {
	if err := checkID(it.ID); err != nil {
		return nil, nil, err
	}
	row, err := Unit(it.Vector)
	if err != nil {
		return nil, nil, err
	}
	meta, err := copyMeta(it.Metadata)
	return row, meta, err
}

// Unit returns v/|v|, refusing vectors of no direction (ErrBadVector) and
// lengths outside 1..MaxDim (ErrDimension).
func Unit(v []float32) ([]float32, error) {
	if len(v) < 1 || len(v) > MaxDim {
		return nil, fmt.Errorf("%w: dimension %d not in 1..%d", ErrDimension, len(v), MaxDim)
	}
	row := make([]float32, len(v))
	return row, normalize(row, v)
}

func checkID(id string) error {
	if err := checkStoredID(id); err != nil {
		return err
	}
	if strings.ContainsFunc(id, unicode.IsControl) {
		// Ids are echoed in responses and may reach logs, where a NUL or a
		// line break would cut or forge a record.
		return fmt.Errorf("%w: holds a control character", ErrBadID)
	}
	return nil
}

// checkStoredID is what a snapshot's ids must pass: snapshots written
// before control characters were refused still load.
func checkStoredID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrBadID)
	case len(id) > MaxIDBytes:
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBadID, len(id), MaxIDBytes)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: not UTF-8", ErrBadID)
	}
	return nil
}

func copyMeta(meta json.RawMessage) (json.RawMessage, error) {
	if len(meta) == 0 {
		return nil, nil
	}
	if len(meta) > MaxMetadataBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMetadata, len(meta), MaxMetadataBytes)
	}
	if !json.Valid(meta) {
		return nil, fmt.Errorf("%w: not valid JSON", ErrMetadata)
	}
	return append(json.RawMessage(nil), meta...), nil
}

// slotBytes estimates the memory one slot holds, for the store's memory
// limit: its vector, graph links and bookkeeping, plus id and metadata.
func (c *Collection) slotBytes(id string, meta json.RawMessage) int64 {
	n := int64(len(id) + len(meta) + 16 + 24 + 4 + 48) // id header, meta header, state, map entry
	if c.params.Storage == StorageInt8 {
		n += int64(c.dim+residBytes(c.dim)) + 4
	} else {
		n += 4 * int64(c.dim)
	}
	if c.g != nil {
		n += c.g.slotBytes()
	}
	return n
}

// put stores a validated, normalised row. journal says whether to log the
// write (false while replaying the log).
func (c *Collection) put(id string, row []float32, meta json.RawMessage, journal bool) error {
	for {
		c.mu.RLock()
		slot, state, err := c.claim(id, row, meta, journal, false)
		switch state {
		case claimDone:
			if c.g != nil {
				c.g.insert(c, slot, row)
			}
			c.mu.RUnlock()
			return nil
		case claimFailed:
			c.mu.RUnlock()
			return err
		}
		c.mu.RUnlock()
		// A full array or a free slot to reuse: both need mu for writing.
		c.mu.Lock()
		slot, state, err = c.claim(id, row, meta, journal, true)
		if state == claimGrow {
			c.mu.Unlock()
			continue
		}
		if state == claimDone && c.g != nil {
			c.g.insert(c, slot, row)
		}
		c.mu.Unlock()
		return err
	}
}

type claimState int

const (
	claimDone claimState = iota
	claimFailed
	claimGrow      // retry with mu held for writing
	claimExclusive // likewise
)

// claim assigns the item a slot and writes its data there. With exclusive
// (mu held for writing) it may grow the arrays and reuse a tombstone's
// slot; without, it asks for exclusive access when it would need either.
func (c *Collection) claim(id string, row []float32, meta json.RawMessage, journal, exclusive bool) (uint32, claimState, error) {
	c.alloc.Lock()
	defer c.alloc.Unlock()
	if c.dropped {
		return 0, claimFailed, fmt.Errorf("%w: it was deleted", ErrNoCollection)
	}
	old, replacing := c.rows[id]
	if c.store != nil {
		if err := c.store.admitItem(c, replacing); err != nil {
			return 0, claimFailed, err
		}
	}
	slot, reuse := uint32(0), false
	if c.reusable() {
		if !exclusive {
			return 0, claimExclusive, nil
		}
		slot, reuse = c.popFree()
	}
	var need int64
	if !reuse {
		if c.store != nil {
			need = c.slotBytes(id, meta)
			if err := c.store.admitBytes(need); err != nil {
				return 0, claimFailed, err
			}
		}
		used := c.used.Load()
		if int(used) >= len(c.ids) {
			if used >= maxSlots {
				return 0, claimFailed, errFull
			}
			if !exclusive {
				return 0, claimGrow, nil
			}
			c.realloc(int(min(max(2*int64(used), 1024), maxSlots)))
		}
		slot = used
		c.used.Store(used + 1)
	}
	if journal && c.store != nil {
		if err := c.store.logUpsert(c, id, row, meta); err != nil {
			// The slot stays unpublished: scans skip it, nothing links to
			// it, and the next insert reuses it.
			c.free = append(c.free, slot)
			return 0, claimFailed, err
		}
	}
	c.write(slot, id, row, meta)
	if c.g != nil {
		c.g.reset(slot, reuse)
	}
	c.state[slot].Store(slotLive)
	if replacing {
		c.state[old].Store(slotDeleted)
		c.free = append(c.free, old)
		c.meta[old] = nil
	} else {
		c.count++
	}
	c.rows[id] = slot
	if c.store != nil {
		c.store.mem.Add(need)
	}
	return slot, claimDone, nil
}

// reusable reports whether the free list holds a slot popFree would take.
func (c *Collection) reusable() bool {
	return len(c.free) > 1 || (len(c.free) == 1 && (c.g == nil || !c.g.isEntry(c.free[0])))
}

// popFree takes a slot from the free list. The graph's entry point stays a
// tombstone forever: reusing it would leave the graph without an entry.
func (c *Collection) popFree() (uint32, bool) {
	for i := len(c.free) - 1; i >= 0; i-- {
		s := c.free[i]
		if c.g != nil && c.g.isEntry(s) {
			continue
		}
		c.free[i] = c.free[len(c.free)-1]
		c.free = c.free[:len(c.free)-1]
		return s, true
	}
	return 0, false
}

// write stores a slot's data; the slot is not yet visible to readers.
func (c *Collection) write(slot uint32, id string, row []float32, meta json.RawMessage) {
	d := c.dim
	s := int(slot)
	if c.params.Storage == StorageInt8 {
		rb := residBytes(d)
		c.scale[s] = quantize(c.codes[s*d:(s+1)*d], c.resid[s*rb:(s+1)*rb], row)
	} else {
		copy(c.vecs[s*d:(s+1)*d], row)
	}
	c.ids[s] = id
	c.meta[s] = meta
}

// quantize writes row as int8 codes with one scale, rounding to nearest,
// plus a 4-bit residual per component, and returns the scale: the
// component is about (code + residual/16) * scale. Graph walks read only
// the codes (a quarter of float32's bytes); the residuals refine the
// scores of the final candidates, which cuts the rounding error sixteenfold
// for 1.5 bytes per component in all.
func quantize(codes []int8, resid []uint8, row []float32) float32 {
	var m float32
	for _, x := range row {
		m = max(m, abs32(x))
	}
	clear(resid)
	if m == 0 {
		clear(codes)
		return 0
	}
	inv := 127 / float64(m)
	for i, x := range row {
		f := float64(x) * inv
		r := math.Round(f)
		n := math.Round((f - r) * 16) // in -8..8
		if n == 8 {
			r, n = r+1, -8 // r+1 <= 127: |f| <= 127 and f-r >= 15/32
		}
		codes[i] = int8(r)
		resid[i/2] |= (uint8(int8(n)) & 0xf) << (4 * (i & 1))
	}
	return m / 127
}

func residBytes(dim int) int { return (dim + 1) / 2 }

// dotF32NibGo returns q·r for 4-bit signed residuals packed two per byte
// (the even component in the low nibble).
func dotF32NibGo(q []float32, nib []uint8) float32 {
	var s0, s1 float32
	n := len(q) &^ 1
	nib = nib[:residBytes(len(q))]
	for i := 0; i < n; i += 2 {
		b := nib[i/2]
		s0 += q[i] * float32(int8(b<<4)>>4)
		s1 += q[i+1] * float32(int8(b)>>4)
	}
	if n < len(q) {
		s0 += q[n] * float32(int8(nib[n/2]<<4)>>4)
	}
	return s0 + s1
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// holds reports whether the collection holds exactly this item, as
// stored: replaying a log record already in the snapshot changes nothing.
func (c *Collection) holds(id string, row []float32, meta json.RawMessage) bool {
	c.alloc.Lock()
	defer c.alloc.Unlock()
	r, ok := c.rows[id]
	if !ok || string(c.meta[r]) != string(meta) || (c.meta[r] == nil) != (meta == nil) {
		return false
	}
	d, s := c.dim, int(r)
	if c.params.Storage == StorageInt8 {
		rb := residBytes(d)
		codes, resid := make([]int8, d), make([]uint8, rb)
		return quantize(codes, resid, row) == c.scale[s] && slices.Equal(codes, c.codes[s*d:(s+1)*d]) &&
			slices.Equal(resid, c.resid[s*rb:(s+1)*rb])
	}
	for i, x := range row {
		if math.Float32bits(x) != math.Float32bits(c.vecs[s*d+i]) {
			return false
		}
	}
	return true
}

// Delete removes the item with the given id.
func (c *Collection) Delete(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	return c.remove(id, true)
}

func (c *Collection) remove(id string, journal bool) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	c.alloc.Lock()
	defer c.alloc.Unlock()
	if c.dropped {
		return fmt.Errorf("%w: it was deleted", ErrNoCollection)
	}
	slot, ok := c.rows[id]
	if !ok {
		return fmt.Errorf("%w: id %q", ErrNotFound, id)
	}
	if journal && c.store != nil {
		if err := c.store.logDelete(c, id); err != nil {
			return err
		}
	}
	delete(c.rows, id)
	c.state[slot].Store(slotDeleted)
	c.free = append(c.free, slot)
	c.count--
	// The metadata goes at once; the vector and id stay until the slot is
	// reused, for graph searches that pass through the tombstone.
	c.meta[slot] = nil
	return nil
}

// Get returns copies of the stored (unit-length, or for int8 storage
// decoded) vector and the metadata of the item with the given id.
func (c *Collection) Get(id string) ([]float32, json.RawMessage, error) {
	if err := checkID(id); err != nil {
		return nil, nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	c.alloc.Lock()
	defer c.alloc.Unlock()
	r, ok := c.rows[id]
	if !ok {
		return nil, nil, fmt.Errorf("%w: id %q", ErrNotFound, id)
	}
	return c.vector(r), append(json.RawMessage(nil), c.meta[r]...), nil
}

// vector returns a copy of a slot's vector, decoded.
func (c *Collection) vector(r uint32) []float32 {
	d, s := c.dim, int(r)
	if c.params.Storage == StorageInt8 {
		v := make([]float32, d)
		rb := residBytes(d)
		nib := c.resid[s*rb : (s+1)*rb]
		for i, x := range c.codes[s*d : (s+1)*d] {
			r := int8(nib[i/2]<<(4*(1-i&1))) >> 4
			v[i] = (float32(x) + float32(r)/16) * c.scale[s]
		}
		return v
	}
	return append([]float32(nil), c.vecs[s*d:(s+1)*d]...)
}

// Search returns the k items most similar to query by cosine similarity,
// best first, using the collection's graph if it has one; fewer if the
// collection holds fewer than k. Equal scores are ordered by ascending id.
func (c *Collection) Search(query []float32, k int) ([]Hit, error) {
	return c.SearchWith(query, k, SearchOptions{})
}

// SearchWith is Search with options: Exact compares every stored vector,
// EfSearch sets the graph search's beam width.
func (c *Collection) SearchWith(query []float32, k int, o SearchOptions) ([]Hit, error) {
	if k < 1 || k > MaxK {
		return nil, fmt.Errorf("%w: k=%d not in 1..%d", ErrBadK, k, MaxK)
	}
	if o.EfSearch < 0 || o.EfSearch > MaxEf {
		return nil, fmt.Errorf("%w: ef_search=%d not in 1..%d", ErrParams, o.EfSearch, MaxEf)
	}
	if len(query) != c.dim {
		return nil, fmt.Errorf("%w: query has %d, collection has %d", ErrDimension, len(query), c.dim)
	}
	q := make([]float32, c.dim)
	if err := normalize(q, query); err != nil {
		return nil, err
	}

	c.mu.RLock()
	defer c.mu.RUnlock()
	var top []cand
	if c.g == nil || o.Exact {
		top = c.scan(q, k)
	} else {
		ef := c.params.EfSearch
		if o.EfSearch > 0 {
			ef = o.EfSearch
		}
		top = c.g.search(c, q, k, max(ef, k))
	}
	return c.hits(top), nil
}

// hits copies the results out. Metadata is read under alloc: a concurrent
// delete clears it.
func (c *Collection) hits(top []cand) []Hit {
	hits := make([]Hit, len(top))
	c.alloc.Lock()
	defer c.alloc.Unlock()
	size := 0
	for _, t := range top {
		size += len(c.meta[t.row])
	}
	// One buffer for all metadata copies: callers get data they may keep
	// and modify, for one allocation instead of one per hit.
	buf := make([]byte, 0, size)
	for i, t := range top {
		hits[i] = Hit{ID: c.ids[t.row], Score: t.score}
		if m := c.meta[t.row]; len(m) > 0 {
			buf = append(buf, m...)
			hits[i].Metadata = json.RawMessage(buf[len(buf)-len(m) : len(buf) : len(buf)])
		}
	}
	return hits
}

// score returns the query's similarity to a slot: a dot product of unit
// vectors, or for int8 storage of the query with the decoded codes.
func (c *Collection) score(q []float32, r uint32) float32 {
	d, s := c.dim, int(r)
	if c.codes != nil {
		return c.scale[s] * dotF32I8(q, c.codes[s*d:(s+1)*d])
	}
	return dotF32(q, c.vecs[s*d:(s+1)*d])
}

// fineScore is score refined by the residuals of int8 storage; for
// float32 storage it is score.
func (c *Collection) fineScore(q []float32, r uint32) float32 {
	if c.codes == nil {
		return c.score(q, r)
	}
	d, s, rb := c.dim, int(r), residBytes(c.dim)
	return c.scale[s] * (dotF32I8(q, c.codes[s*d:(s+1)*d]) + dotF32Nib(q, c.resid[s*rb:(s+1)*rb])/16)
}

// pairScore is the similarity of two stored slots.
func (c *Collection) pairScore(a, b uint32) float32 {
	d := c.dim
	if c.codes != nil {
		return c.scale[a] * c.scale[b] * float32(dotI8(c.codes[int(a)*d:int(a+1)*d], c.codes[int(b)*d:int(b+1)*d]))
	}
	return dotF32(c.vecs[int(a)*d:int(a+1)*d], c.vecs[int(b)*d:int(b+1)*d])
}

func (c *Collection) prefetch(r uint32) {
	d, s := c.dim, int(r)
	if c.codes != nil {
		prefetchI8(c.codes[s*d : (s+1)*d])
	} else {
		prefetchF32(c.vecs[s*d : (s+1)*d])
	}
}

// live reports whether a slot holds a current item.
func (c *Collection) live(r uint32) bool { return c.state[r].Load() == slotLive }

// scan returns the best k live slots, best first. Caller holds mu for
// reading.
func (c *Collection) scan(q []float32, k int) []cand {
	n := int(c.used.Load())
	shards := 1
	if n > parallelMinRows {
		shards = min(runtime.GOMAXPROCS(0), n/(parallelMinRows/2))
	}
	if shards <= 1 {
		t := newTopK(k, c.ids)
		c.scanRows(t, q, 0, n)
		return t.sorted()
	}
	// Each shard keeps its own heap so the scan shares nothing; the global
	// top k is among the union of the shards' top k.
	parts := make([]*topK, shards)
	var wg recovered.Group
	for s := range shards {
		lo, hi := n*s/shards, n*(s+1)/shards
		parts[s] = newTopK(k, c.ids)
		wg.Go(func() { c.scanRows(parts[s], q, lo, hi) })
	}
	wg.Wait()
	t := parts[0]
	for _, p := range parts[1:] {
		for _, x := range p.h {
			if x.score >= t.min {
				t.push(x.score, x.row)
			}
		}
	}
	return t.sorted()
}

// scanRows offers the live slots in [lo, hi) to t.
func (c *Collection) scanRows(t *topK, q []float32, lo, hi int) {
	if c.codes == nil {
		scanRows(t, q, c.vecs, c.dim, lo, hi, c.state)
		return
	}
	for r := lo; r < hi; r++ {
		if c.state[r].Load() != slotLive {
			continue
		}
		if s := c.fineScore(q, uint32(r)); s >= t.min {
			t.push(s, int32(r))
		}
	}
}

// Info describes a collection.
type Info struct {
	Name      string `json:"name"`
	Count     int    `json:"count"`
	Dimension int    `json:"dimension"`
	Params    Params `json:"params"`
}

// ErrParams: index parameters out of range or unknown.
var ErrParams = errors.New("index: bad parameters")

// describe is for error messages and logs.
func (p Params) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "index=%s storage=%s", p.Index, p.Storage)
	if p.Index == IndexHNSW {
		fmt.Fprintf(&b, " m=%d ef_construction=%d ef_search=%d", p.M, p.EfConstruction, p.EfSearch)
	}
	return b.String()
}
