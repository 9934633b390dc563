// Shared by the AVX2 kernels (resize_avx2.h, composite_avx2.h): compiled
// for AVX2 function by function, so the package still builds and runs on
// any x86-64; avx2_amd64.go calls them only where the CPU has AVX2.
#ifndef IMGSERVE_AVX2_H
#define IMGSERVE_AVX2_H
#include <stdint.h>
#include <string.h>
#include <immintrin.h>

#define IMGSERVE_AVX2 __attribute__((target("avx2")))

static inline int imgserve_has_avx2(void) {
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2");
}
#endif
