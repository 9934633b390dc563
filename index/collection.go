package index

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unicode/utf8"
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

// parallelMinRows is the collection size above which Search splits the scan
// across GOMAXPROCS goroutines. Below it a search takes a few milliseconds
// at most and goroutine start-up and the extra heaps would cost more than
// they save. A variable so tests can exercise the sharded path cheaply.
var parallelMinRows = 32 * 1024

// errFull is practically unreachable (2^31 rows of even one dimension is
// 8 GiB of vectors) and exists because rows are stored as int32.
var errFull = errors.New("index: collection full")

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
// Rows live contiguously: vector i occupies vecs[i*dim:(i+1)*dim] and its id
// and metadata are ids[i] and meta[i], so a search streams one flat slice.
// Deleting moves the last row into the hole, keeping the rows dense at the
// price of row numbers not being stable (nothing outside uses them).
//
// Many concurrent searches and occasional writes are the expected load,
// hence a RWMutex: searches share the read lock for the whole scan, writes
// are short (O(dim)) exclusive sections.
type Collection struct {
	dim int

	mu   sync.RWMutex
	vecs []float32
	ids  []string
	meta []json.RawMessage
	rows map[string]int32
}

// NewCollection returns an empty collection for vectors of length dim
// (1..MaxDim).
func NewCollection(dim int) (*Collection, error) {
	if dim < 1 || dim > MaxDim {
		return nil, fmt.Errorf("%w: dimension %d not in 1..%d", ErrDimension, dim, MaxDim)
	}
	return &Collection{dim: dim, rows: make(map[string]int32)}, nil
}

// Dim returns the vector dimension.
func (c *Collection) Dim() int { return c.dim }

// Len returns the number of items.
func (c *Collection) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.ids)
}

// Grow reserves room for n more items, so that bulk loads of a known size
// do not pay for repeated reallocation (append would briefly hold about
// 2.25x the vector memory while copying the largest slice).
func (c *Collection) Grow(n int) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ids)+n > cap(c.ids) || (len(c.ids)+n)*c.dim > cap(c.vecs) {
		c.realloc(len(c.ids) + n)
	}
}

// realloc moves the rows into slices of capacity n (n >= len(c.ids)).
func (c *Collection) realloc(n int) {
	vecs := make([]float32, len(c.vecs), n*c.dim)
	copy(vecs, c.vecs)
	ids := make([]string, len(c.ids), n)
	copy(ids, c.ids)
	meta := make([]json.RawMessage, len(c.meta), n)
	copy(meta, c.meta)
	c.vecs, c.ids, c.meta = vecs, ids, meta
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
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.put(id, row, m)
}

// UpsertBatch upserts all items or, if any is invalid, none: validation
// happens before the write lock is taken, so a bad item in a large batch
// neither blocks searches nor leaves a half-applied batch. Later items win
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
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ids)+len(items) > math.MaxInt32 {
		return errFull
	}
	for i, it := range items {
		_ = c.put(it.ID, rows[i*c.dim:(i+1)*c.dim], metas[i]) // cannot fail: room checked above
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

func checkID(id string) error {
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

// put stores a validated, normalised row. Caller holds c.mu for writing.
func (c *Collection) put(id string, row []float32, meta json.RawMessage) error {
	if r, ok := c.rows[id]; ok {
		copy(c.vecs[int(r)*c.dim:], row)
		c.meta[r] = meta
		return nil
	}
	if len(c.ids) >= math.MaxInt32 {
		return errFull
	}
	c.rows[id] = int32(len(c.ids))
	c.ids = append(c.ids, id)
	c.meta = append(c.meta, meta)
	c.vecs = append(c.vecs, row...)
	return nil
}

// Delete removes the item with the given id.
func (c *Collection) Delete(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.rows[id]
	if !ok {
		return fmt.Errorf("%w: id %q", ErrNotFound, id)
	}
	last := int32(len(c.ids) - 1)
	if r != last {
		d := c.dim
		copy(c.vecs[int(r)*d:int(r+1)*d], c.vecs[int(last)*d:])
		c.ids[r] = c.ids[last]
		c.meta[r] = c.meta[last]
		c.rows[c.ids[r]] = r
	}
	delete(c.rows, id)
	// Clear the vacated slots so the strings and metadata can be collected.
	c.ids[last] = ""
	c.meta[last] = nil
	c.ids = c.ids[:last]
	c.meta = c.meta[:last]
	c.vecs = c.vecs[:int(last)*c.dim]
	c.maybeShrink()
	return nil
}

// maybeShrink gives memory back after mass deletion. Go maps never shrink,
// so the id map is rebuilt too. Halving at a quarter full keeps the cost
// amortised O(1) per delete.
func (c *Collection) maybeShrink() {
	n := len(c.ids)
	if cap(c.ids) < 1024 || n > cap(c.ids)/4 {
		return
	}
	c.realloc(2 * n)
	rows := make(map[string]int32, n)
	for i, id := range c.ids {
		rows[id] = int32(i)
	}
	c.rows = rows
}

// Get returns copies of the stored (unit-length) vector and the metadata
// of the item with the given id.
func (c *Collection) Get(id string) ([]float32, json.RawMessage, error) {
	if err := checkID(id); err != nil {
		return nil, nil, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.rows[id]
	if !ok {
		return nil, nil, fmt.Errorf("%w: id %q", ErrNotFound, id)
	}
	vec := append([]float32(nil), c.vecs[int(r)*c.dim:int(r+1)*c.dim]...)
	return vec, append(json.RawMessage(nil), c.meta[r]...), nil
}

// Search returns the k items most similar to query by cosine similarity,
// best first; fewer if the collection holds fewer than k. Equal scores are
// ordered by ascending id. The result is exact: every stored vector is
// compared. query need not be unit length.
func (c *Collection) Search(query []float32, k int) ([]Hit, error) {
	if k < 1 || k > MaxK {
		return nil, fmt.Errorf("%w: k=%d not in 1..%d", ErrBadK, k, MaxK)
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
	n := len(c.ids)
	k = min(k, n)
	if k == 0 {
		return []Hit{}, nil
	}
	top := c.scan(q, k)
	hits := make([]Hit, len(top))
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
	return hits, nil
}

// scan returns the best k rows, best first. Caller holds c.mu for reading.
func (c *Collection) scan(q []float32, k int) []cand {
	n := len(c.ids)
	shards := 1
	if n > parallelMinRows {
		shards = min(runtime.GOMAXPROCS(0), n/(parallelMinRows/2))
	}
	if shards <= 1 {
		t := newTopK(k, c.ids)
		scanRows(t, q, c.vecs, c.dim, 0, n)
		return t.sorted()
	}
	// Each shard keeps its own heap so the scan shares nothing; the global
	// top k is among the union of the shards' top k.
	parts := make([]*topK, shards)
	var wg sync.WaitGroup
	for s := range shards {
		lo, hi := n*s/shards, n*(s+1)/shards
		parts[s] = newTopK(k, c.ids)
		wg.Go(func() { scanRows(parts[s], q, c.vecs, c.dim, lo, hi) })
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
