package index

import (
	"fmt"
	"slices"
	"sync"
)

// MaxNameBytes is the longest collection name.
const MaxNameBytes = 64

// Store is a set of named collections.
//
// Its lock covers only the name→collection map; work on a collection takes
// that collection's own lock, so a long search in one collection never
// blocks lookups or writes in another.
type Store struct {
	mu   sync.RWMutex
	cols map[string]*Collection
}

// NewStore returns an empty in-memory store. It never touches the disk;
// see Snapshot.
func NewStore() *Store {
	return &Store{cols: make(map[string]*Collection)}
}

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
		return nil, fmt.Errorf("%w: collection %q", ErrNotFound, name)
	}
	return c, nil
}

// GetOrCreate returns the named collection, creating it with dimension dim
// if it does not exist. The dimension is fixed at creation: asking for an
// existing collection with another dimension is ErrDimension.
func (s *Store) GetOrCreate(name string, dim int) (*Collection, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	s.mu.RLock()
	c, ok := s.cols[name]
	s.mu.RUnlock()
	if !ok {
		nc, err := NewCollection(dim)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		// Another caller may have created it since the read lock was dropped.
		if c, ok = s.cols[name]; !ok {
			c = nc
			s.cols[name] = c
		}
		s.mu.Unlock()
	}
	if c.dim != dim {
		return nil, fmt.Errorf("%w: collection %q has dimension %d, not %d", ErrDimension, name, c.dim, dim)
	}
	return c, nil
}

// Delete removes the named collection. Callers still holding it may keep
// using it; it is simply no longer reachable from the store.
func (s *Store) Delete(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cols[name]; !ok {
		return fmt.Errorf("%w: collection %q", ErrNotFound, name)
	}
	delete(s.cols, name)
	return nil
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

// put adds a fully built collection; used when loading a snapshot.
func (s *Store) put(name string, c *Collection) {
	s.mu.Lock()
	s.cols[name] = c
	s.mu.Unlock()
}
