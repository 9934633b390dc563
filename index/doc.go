// Package index keeps collections of embedding vectors (for example CLIP
// image embeddings) and answers cosine top-k queries for reverse image
// search.
//
// A Collection stores only ids, unit-length vectors and small JSON
// metadata; images never enter this package. Vectors are normalised on
// insert so that cosine similarity is a dot product. By default a
// collection keeps an HNSW graph (hnsw.go) built as items arrive and
// searches through it; a search may ask for an exact scan instead, and a
// "flat" collection has no graph. Vectors are stored as float32, or as int8
// codes with 4-bit residuals for re-ranking (Params.Storage). The distance
// kernels are AVX2 assembly on amd64 (kernels_amd64.s), portable Go
// elsewhere.
//
// A Store is a set of named collections with optional limits (Limits). It
// lives in memory and never touches the disk unless opened with OpenStore,
// which keeps a snapshot plus an append-only log (journal.go), or asked
// for a Snapshot. index/pgstore implements the same Backend interface on
// PostgreSQL with pgvector.
//
// All types are safe for concurrent use. Errors that callers are expected to
// map to responses (for example HTTP status codes) wrap the sentinel errors
// in errors.go, so test them with errors.Is.
package index
