// Package index keeps collections of embedding vectors (for example CLIP
// image embeddings) in memory and answers exact cosine top-k queries for
// reverse image search.
//
// A Collection stores only ids, unit-length float32 vectors and small JSON
// metadata; images never enter this package. Vectors are normalised on
// insert so that cosine similarity is a plain dot product, and the search is
// an exhaustive scan: results are exact, not approximate, which keeps the
// behaviour easy to reason about at the sizes a single server holds (about
// a million 512-dimensional vectors scan in roughly 0.1 s on two cores).
//
// A Store is a set of named collections. Nothing is written to disk unless
// Store.Snapshot is called; LoadSnapshot restores a Store from such a file.
//
// All types are safe for concurrent use. Errors that callers are expected to
// map to responses (for example HTTP status codes) wrap the sentinel errors
// below, so test them with errors.Is.
package index
