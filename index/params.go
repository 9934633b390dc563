package index

import "fmt"

// Params are a collection's index settings, fixed when it is created. The
// zero value means the defaults; Normalize fills them in.
type Params struct {
	// Index is "hnsw" (a graph for approximate search, the default) or
	// "flat" (no graph: every search scans, inserts are cheaper).
	Index string `json:"index"`
	// Storage is "float32" (the default: scores are exact cosines) or
	// "int8" (a quarter of the memory: each vector is kept as int8 codes
	// with one scale, and scored in float32 arithmetic against the
	// unquantised query, within about 1e-3 of the float32 cosine).
	Storage string `json:"storage"`
	// M is the graph's out-degree on the upper layers; layer 0 has 2*M.
	M int `json:"m,omitempty"`
	// EfConstruction is the beam width used to find a new item's
	// neighbours: higher builds a better graph, more slowly.
	EfConstruction int `json:"ef_construction,omitempty"`
	// EfSearch is the default beam width of a search (at least k is used):
	// higher gives better recall, more slowly. A query may override it.
	EfSearch int `json:"ef_search,omitempty"`
}

const (
	IndexHNSW      = "hnsw"
	IndexFlat      = "flat"
	StorageFloat32 = "float32"
	StorageInt8    = "int8"

	DefaultM              = 16
	DefaultEfConstruction = 100
	DefaultEfSearch       = 64
	// MaxM and MaxEf bound the per-node and per-search memory a client can
	// ask for.
	MaxM  = 64
	MaxEf = 4096
)

// Normalize fills in defaults and checks ranges. A flat index has no graph
// settings.
func (p Params) Normalize() (Params, error) {
	if p.Index == "" {
		p.Index = IndexHNSW
	}
	if p.Storage == "" {
		p.Storage = StorageFloat32
	}
	switch p.Storage {
	case StorageFloat32, StorageInt8:
	default:
		return p, fmt.Errorf("%w: storage %q: use float32 or int8", ErrParams, p.Storage)
	}
	switch p.Index {
	case IndexFlat:
		if p.M != 0 || p.EfConstruction != 0 || p.EfSearch != 0 {
			return p, fmt.Errorf("%w: m, ef_construction and ef_search apply to hnsw only", ErrParams)
		}
		return p, nil
	case IndexHNSW:
	default:
		return p, fmt.Errorf("%w: index %q: use hnsw or flat", ErrParams, p.Index)
	}
	if p.M == 0 {
		p.M = DefaultM
	}
	if p.EfConstruction == 0 {
		p.EfConstruction = DefaultEfConstruction
	}
	if p.EfSearch == 0 {
		p.EfSearch = DefaultEfSearch
	}
	switch {
	case p.M < 2 || p.M > MaxM:
		return p, fmt.Errorf("%w: m=%d not in 2..%d", ErrParams, p.M, MaxM)
	case p.EfConstruction < 1 || p.EfConstruction > MaxEf:
		return p, fmt.Errorf("%w: ef_construction=%d not in 1..%d", ErrParams, p.EfConstruction, MaxEf)
	case p.EfSearch < 1 || p.EfSearch > MaxEf:
		return p, fmt.Errorf("%w: ef_search=%d not in 1..%d", ErrParams, p.EfSearch, MaxEf)
	}
	return p, nil
}

// SearchOptions adjust one search.
type SearchOptions struct {
	// Exact scans every item instead of walking the graph.
	Exact bool
	// EfSearch overrides the collection's beam width (0: its default).
	EfSearch int
}
