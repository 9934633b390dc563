package index

import "errors"

// Sentinel errors. Returned errors wrap one of these with detail, so compare
// with errors.Is rather than ==.
var (
	// ErrDimension: a vector's length differs from its collection's
	// dimension, or a requested dimension is out of range.
	ErrDimension = errors.New("index: wrong vector dimension")
	// ErrBadK: k is not in 1..MaxK.
	ErrBadK = errors.New("index: k out of range")
	// ErrBadVector: the vector is all zeros or holds NaN or ±Inf, so it has
	// no direction to compare.
	ErrBadVector = errors.New("index: bad vector")
	// ErrBadID: the id is empty, longer than MaxIDBytes, not UTF-8 or holds
	// a control character.
	ErrBadID = errors.New("index: bad id")
	// ErrMetadata: metadata is larger than MaxMetadataBytes or is not
	// valid JSON.
	ErrMetadata = errors.New("index: bad metadata")
	// ErrNotFound: no item with that id, or no collection with that name.
	ErrNotFound = errors.New("index: not found")
	// ErrBadName: a collection name does not match ^[A-Za-z0-9_.-]{1,64}$.
	ErrBadName = errors.New("index: bad collection name")
	// ErrCorrupt: a snapshot file is truncated, damaged or not a snapshot.
	ErrCorrupt = errors.New("index: corrupt snapshot")
	// ErrLimit: a write would pass one of the store's Limits.
	ErrLimit = errors.New("index: limit reached")
	// ErrExists: a collection exists with other settings than requested.
	ErrExists = errors.New("index: collection exists")
)

// ErrNoCollection: no collection has that name. It is also ErrNotFound.
var ErrNoCollection error = noCollection{}

type noCollection struct{}

func (noCollection) Error() string        { return "index: no such collection" }
func (noCollection) Is(target error) bool { return target == ErrNotFound }
