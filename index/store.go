package index

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// MaxNameBytes is the longest collection name.
const MaxNameBytes = 64

// Limits bound what a Store holds; zero fields mean no limit. Past a limit
// writes fail with an error wrapping ErrLimit.
type Limits struct {
	// MaxCollections is the most collections the store holds.
	MaxCollections int
	// MaxItems is the most items one collection holds.
	MaxItems int
	// MaxMemory is the most bytes of vectors, graph links, ids and
	// metadata, as estimated per slot (see Collection.slotBytes). Freed
	// slots stay allocated for reuse and still count.
	MaxMemory int64
}

// Store is a set of named collections, held in memory; with OpenStore, also
// in an append-only log and snapshots on disk.
//
// Its lock covers only the name→collection map; work on a collection takes
// that collection's own lock, so a long search in one collection never
// blocks lookups or writes in another.
type Store struct {
	mu     sync.RWMutex
	cols   map[string]*Collection
	limits Limits
	mem    atomic.Int64

	j *journal // nil: memory only
}

// NewStore returns an empty in-memory store without limits. It never
// touches the disk; see Snapshot and OpenStore.
func NewStore() *Store {
	return &Store{cols: make(map[string]*Collection)}
}

// SetLimits sets the store's limits. Items already held stay.
func (s *Store) SetLimits(l Limits) {
	s.mu.Lock()
	s.limits = l
	s.mu.Unlock()
}

// MemoryBytes is the store's estimated memory use, as MaxMemory counts it.
func (s *Store) MemoryBytes() int64 { return s.mem.Load() }

// ValidName reports whether name can name a collection: 1 to 64 characters
// from [A-Za-z0-9_.-]. The set is safe in URL paths and file names, and
// ASCII-only so that names compare byte for byte.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameBytes {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch ch := name[i]; {
		case 'a' <= ch && ch <= 'z', 'A' <= ch && ch <= 'Z', '0' <= ch && ch <= '9',
			ch == '_', ch == '.', ch == '-':
		default:
			return false
		}
	}
	return true
}

func checkName(name string) error {
	if !ValidName(name) {
		return fmt.Errorf("%w: %q", ErrBadName, name)
	}
	return nil
}

// Get returns the named collection, or ErrNotFound.
func (s *Store) Get(name string) (*Collection, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.cols[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNoCollection, name)
	}
	return c, nil
}

// GetOrCreate returns the named collection, creating it with dimension dim
// and default parameters if it does not exist. The dimension is fixed at
// creation: asking for an existing collection with another dimension is
// ErrDimension.
func (s *Store) GetOrCreate(name string, dim int) (*Collection, error) {
	c, _, err := s.create(name, dim, Params{}, false)
	return c, err
}

// create returns the named collection, creating it if it does not exist.
// With strict, an existing collection must have exactly the given
// parameters (ErrExists otherwise); without, only its dimension must match.
func (s *Store) create(name string, dim int, p Params, strict bool) (*Collection, bool, error) {
	if err := checkName(name); err != nil {
		return nil, false, err
	}
	s.mu.RLock()
	c, ok := s.cols[name]
	s.mu.RUnlock()
	created := false
	if !ok {
		nc, err := NewCollectionParams(dim, p)
		if err != nil {
			return nil, false, err
		}
		s.mu.Lock()
		// Another caller may have created it since the read lock was dropped.
		if c, ok = s.cols[name]; !ok {
			if max := s.limits.MaxCollections; max > 0 && len(s.cols) >= max {
				s.mu.Unlock()
				return nil, false, fmt.Errorf("%w: %d collections, the most this server holds", ErrLimit, max)
			}
			if err := s.logCreate(name, nc); err != nil {
				s.mu.Unlock()
				return nil, false, err
			}
			c, created = nc, true
			s.attach(name, c)
		}
		s.mu.Unlock()
	}
	if c.dim != dim {
		return nil, false, fmt.Errorf("%w: collection %q has dimension %d, not %d", ErrDimension, name, c.dim, dim)
	}
	if strict && !created {
		want, err := p.Normalize()
		if err != nil {
			return nil, false, err
		}
		if want != c.params {
			return nil, false, fmt.Errorf("%w: collection %q has %s", ErrExists, name, c.params)
		}
	}
	return c, created, nil
}

// attach adds a collection to the map. Caller holds s.mu for writing, or
// owns s alone.
func (s *Store) attach(name string, c *Collection) {
	c.store, c.name = s, name
	s.cols[name] = c
}

// Delete removes the named collection. Callers still holding it get
// ErrNotFound from its writes; searches go on working.
func (s *Store) Delete(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cols[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoCollection, name)
	}
	// Under alloc, so that no write to the collection is logged after the
	// drop record (it would land in a later collection of the same name).
	c.alloc.Lock()
	defer c.alloc.Unlock()
	if err := s.logDrop(name); err != nil {
		return err
	}
	c.dropped = true
	delete(s.cols, name)
	s.mem.Add(-c.memBytes())
	return nil
}

// memBytes estimates a collection's memory for the store's limit. Caller
// holds c.alloc.
func (c *Collection) memBytes() int64 {
	var n int64
	for i := range int(c.used.Load()) {
		n += c.slotBytes(c.ids[i], c.meta[i])
	}
	return n
}

// Names returns the collection names in sorted order.
func (s *Store) Names() []string {
	s.mu.RLock()
	names := make([]string, 0, len(s.cols))
	for name := range s.cols {
		names = append(names, name)
	}
	s.mu.RUnlock()
	slices.Sort(names)
	return names
}

// admitItem checks the item limit for a write to c. Caller holds c.alloc.
func (s *Store) admitItem(c *Collection, replacing bool) error {
	if max := s.limits.MaxItems; max > 0 && !replacing && c.count >= max {
		return fmt.Errorf("%w: collection %q holds %d items, the most this server allows", ErrLimit, c.name, max)
	}
	return nil
}

// admitBytes checks the memory limit for a new slot.
func (s *Store) admitBytes(n int64) error {
	if max := s.limits.MaxMemory; max > 0 && s.mem.Load()+n > max {
		return fmt.Errorf("%w: the collections hold %d MiB of the %d MiB this server allows", ErrLimit, s.mem.Load()>>20, max>>20)
	}
	return nil
}

func (c *Collection) info(name string) Info {
	return Info{Name: name, Count: c.Len(), Dimension: c.dim, Params: c.params}
}

// The Backend methods: the collection API over this store.

// List describes every collection, by name.
func (s *Store) List(context.Context) ([]Info, error) {
	var out []Info
	for _, name := range s.Names() {
		if c, err := s.Get(name); err == nil {
			out = append(out, c.info(name))
		}
	}
	return out, nil
}

// Info describes one collection.
func (s *Store) Info(_ context.Context, name string) (Info, error) {
	c, err := s.Get(name)
	if err != nil {
		return Info{}, err
	}
	return c.info(name), nil
}

// Create makes an empty collection with the given dimension and
// parameters. Creating one that exists with the same settings succeeds and
// reports created false; with other settings it is ErrExists.
func (s *Store) Create(_ context.Context, name string, dim int, p Params) (Info, bool, error) {
	c, created, err := s.create(name, dim, p, true)
	if err != nil {
		return Info{}, false, err
	}
	return c.info(name), created, nil
}

// Upsert stores an item, creating the collection with default parameters
// and the item's dimension if it does not exist. A collection is never
// created for an invalid item.
func (s *Store) Upsert(_ context.Context, name string, it Item) (Info, error) {
	if err := checkName(name); err != nil {
		return Info{}, err
	}
	row, meta, err := PrepareItem(it)
	if err != nil {
		return Info{}, err
	}
	c, err := s.GetOrCreate(name, len(row))
	if err != nil {
		return Info{}, err
	}
	if err := c.put(it.ID, row, meta, true); err != nil {
		return Info{}, err
	}
	return c.info(name), nil
}

// DeleteItem removes an item.
func (s *Store) DeleteItem(_ context.Context, name, id string) (Info, error) {
	c, err := s.Get(name)
	if err != nil {
		return Info{}, err
	}
	if err := c.Delete(id); err != nil {
		return Info{}, err
	}
	return c.info(name), nil
}

// Drop deletes a collection and its items.
func (s *Store) Drop(_ context.Context, name string) error { return s.Delete(name) }

// Search runs a top-k query on a collection.
func (s *Store) Search(_ context.Context, name string, q []float32, k int, o SearchOptions) ([]Hit, error) {
	c, err := s.Get(name)
	if err != nil {
		return nil, err
	}
	return c.SearchWith(q, k, o)
}

// Backend is the collection API, implemented by Store (in process) and by
// index/pgstore (PostgreSQL with pgvector, shared by replicas). Errors wrap
// this package's sentinels.
type Backend interface {
	List(ctx context.Context) ([]Info, error)
	Info(ctx context.Context, name string) (Info, error)
	Create(ctx context.Context, name string, dim int, p Params) (Info, bool, error)
	Upsert(ctx context.Context, name string, it Item) (Info, error)
	DeleteItem(ctx context.Context, name, id string) (Info, error)
	Drop(ctx context.Context, name string) error
	Search(ctx context.Context, name string, q []float32, k int, o SearchOptions) ([]Hit, error)
	Close() error
}

var _ Backend = (*Store)(nil)
