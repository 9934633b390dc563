package tokenizer

import (
	"hash/maphash"
	"strings"
	"sync"
)

const (
	cacheShards = 16
	// defaultCacheSize matches the Hugging Face BPE cache capacity.
	defaultCacheSize = 10_000
	// maxCachedWordLen keeps one pathological request (a megabyte without a
	// space) from pinning a megabyte per entry; like the Rust crate, long
	// words are simply recomputed.
	maxCachedWordLen = 256
)

// wordCache maps a pre-token's raw bytes to its BPE ids. It is sharded so
// that concurrent requests mostly take different read locks, and bounded:
// a full shard is dropped wholesale rather than evicted entry by entry,
// because exact LRU would turn every hit into a write under a lock, while
// natural text re-warms a cleared shard within a few sentences.
type wordCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string][]int32
	_  [32]byte // pad to 64 bytes: keep shards off each other's cache lines
}

// newWordCache returns a cache holding about size words; size <= 0
// disables caching.
func newWordCache(size int) *wordCache {
	if size <= 0 {
		return nil
	}
	c := &wordCache{seed: maphash.MakeSeed(), perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string][]int32)
	}
	return c
}

func (c *wordCache) shard(word string) *cacheShard {
	return &c.shards[maphash.String(c.seed, word)%cacheShards]
}

// get returns the cached ids for word; callers must not modify them.
func (c *wordCache) get(word string) ([]int32, bool) {
	if c == nil || len(word) > maxCachedWordLen {
		return nil, false
	}
	s := c.shard(word)
	s.mu.RLock()
	ids, ok := s.m[word]
	s.mu.RUnlock()
	return ids, ok
}

// put stores ids, which the cache then owns.
func (c *wordCache) put(word string, ids []int32) {
	if c == nil || len(word) > maxCachedWordLen {
		return
	}
	s := c.shard(word)
	// Clone so the entry does not keep the caller's whole input text alive.
	word = strings.Clone(word)
	s.mu.Lock()
	if len(s.m) >= c.perShard {
		s.m = make(map[string][]int32, len(s.m))
	}
	s.m[word] = ids
	s.mu.Unlock()
}

// len reports the number of cached words (for tests).
func (c *wordCache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
