//go:build !amd64 || purego

package index

const useAVX2 = false

func dotF32(a, b []float32) float32          { return dotF32Go(a, b) }
func dotF32I8(q []float32, c []int8) float32 { return dotF32I8Go(q, c) }
func dotI8(a, b []int8) int32                { return dotI8Go(a, b) }
func prefetchF32([]float32)                  {}
func prefetchI8([]int8)                      {}
