package inference

/*
#include <stdlib.h>
#include "ortbind.h"
*/
import "C"

import (
	"sync"
	"unsafe"
)

// pinnedPool recycles page-locked host buffers for the batches of a model
// on a GPU. ONNX Runtime copies a batch from host memory to the GPU before
// each run; from ordinary (pageable) memory the CUDA driver first copies it
// again into a page-locked staging buffer, from page-locked memory the GPU
// reads it directly. Packing the batch straight into page-locked memory
// saves that second host copy. Page-locked memory is scarce and slow to
// allocate, so each size class keeps only a few buffers, and Close frees
// them.
type pinnedPool struct {
	alloc func(n int) (unsafe.Pointer, error)
	free  func(unsafe.Pointer)
	keep  int // buffers kept per size class

	mu     sync.Mutex
	idle   map[int][]unsafe.Pointer // size class -> free buffers
	owned  map[unsafe.Pointer]int   // every buffer handed out, by its class
	closed bool
}

func newPinnedPool(keep int, alloc func(n int) (unsafe.Pointer, error), free func(unsafe.Pointer)) *pinnedPool {
	return &pinnedPool{alloc: alloc, free: free, keep: max(keep, 1), idle: map[int][]unsafe.Pointer{}, owned: map[unsafe.Pointer]int{}}
}

// cudaPinnedPool allocates with the CUDA runtime.
func cudaPinnedPool(keep int) *pinnedPool {
	return newPinnedPool(keep, func(n int) (unsafe.Pointer, error) {
		var p unsafe.Pointer
		err := cError(C.ob_pinned_alloc(C.size_t(n), &p))
		return p, err
	}, func(p unsafe.Pointer) { C.free(unsafe.Pointer(C.ob_pinned_free(p))) })
}

// get returns a buffer of n bytes: page-locked, or ordinary Go memory when
// page-locked memory cannot be had (the batch then takes the staging copy,
// and still runs).
func (p *pinnedPool) get(n int) *[]byte {
	c := sizeClass(n)
	p.mu.Lock()
	if free := p.idle[c]; len(free) > 0 {
		ptr := free[len(free)-1]
		p.idle[c] = free[:len(free)-1]
		p.mu.Unlock()
		b := unsafe.Slice((*byte)(ptr), 1<<c)[:n]
		return &b
	}
	p.mu.Unlock()
	ptr, err := p.alloc(1 << c)
	if err != nil || ptr == nil {
		b := make([]byte, n, 1<<c)
		return &b
	}
	p.mu.Lock()
	p.owned[ptr] = c
	p.mu.Unlock()
	b := unsafe.Slice((*byte)(ptr), 1<<c)[:n]
	return &b
}

// put takes a buffer back; it frees what it cannot keep.
func (p *pinnedPool) put(b *[]byte) {
	ptr := unsafe.Pointer(unsafe.SliceData(*b))
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.owned[ptr]
	if !ok {
		return // Go memory from a failed allocation: the collector has it
	}
	if p.closed || len(p.idle[c]) >= p.keep {
		delete(p.owned, ptr)
		p.free(ptr)
		return
	}
	p.idle[c] = append(p.idle[c], ptr)
}

// close frees the idle buffers; buffers still out are freed by put.
func (p *pinnedPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for c, free := range p.idle {
		for _, ptr := range free {
			delete(p.owned, ptr)
			p.free(ptr)
		}
		delete(p.idle, c)
	}
}
