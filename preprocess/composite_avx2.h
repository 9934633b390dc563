// AVX2 version of the cutout PNG's row loop (composite.go's cutoutRow,
// then encode.go's upFilter), included only by composite_avx2_amd64.go.
// The same arithmetic as the Go code, eight pixels per step: products of
// a channel and the mask fit 16 bits (255*255), and PIL's DIV255,
// (t + (t >> 8)) >> 8 with t = x + 128, stays below 65536, so 16-bit lanes
// give the same bytes (TestCutoutPNGKernelMatchesGo).
#include "avx2.h"

static inline uint8_t imgserve_div255(uint32_t a) {
	a += 128;
	return (uint8_t)(((a >> 8) + a) >> 8);
}

IMGSERVE_AVX2 static inline __m256i imgserve_div255_16(__m256i x) {
	__m256i t = _mm256_add_epi16(x, _mm256_set1_epi16(128));
	return _mm256_srli_epi16(_mm256_add_epi16(t, _mm256_srli_epi16(t, 8)), 8);
}

// imgserve_cutout_row writes the cutout of one row (w RGBA pixels of src, w mask bytes)
// into d.
IMGSERVE_AVX2 static void imgserve_cutout_row(uint8_t *d, const uint8_t *src, const uint8_t *m, int w) {
	const __m256i spread = _mm256_setr_epi8(
		0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3,
		4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7);
	const __m256i zero = _mm256_setzero_si256();
	int x = 0;
	for (; x + 8 <= w; x += 8) {
		__m256i p = _mm256_loadu_si256((const __m256i *)(src + 4 * x));
		long long m8;
		memcpy(&m8, m + x, 8);
		__m256i a = _mm256_shuffle_epi8(_mm256_set1_epi64x(m8), spread);
		__m256i lo = imgserve_div255_16(_mm256_mullo_epi16(_mm256_unpacklo_epi8(p, zero), _mm256_unpacklo_epi8(a, zero)));
		__m256i hi = imgserve_div255_16(_mm256_mullo_epi16(_mm256_unpackhi_epi8(p, zero), _mm256_unpackhi_epi8(a, zero)));
		_mm256_storeu_si256((__m256i *)(d + 4 * x), _mm256_packus_epi16(lo, hi));
	}
	for (; x < w; x++) {
		uint32_t a = m[x];
		for (int c = 0; c < 4; c++) d[4 * x + c] = imgserve_div255(src[4 * x + c] * a);
	}
}

// imgserve_cutout_up writes rows [lo, hi) of the cutout of img (RGBA,
// istride bytes a row) by mask (mstride bytes a row), w pixels wide, into
// f as PNG scanlines: the Up filter's type byte, then each byte minus the
// one above (the first row of the image as it is). cur and prev are
// scratch rows of 4*w bytes.
IMGSERVE_AVX2 static void imgserve_cutout_up(uint8_t *f, const uint8_t *img, long istride,
		const uint8_t *mask, long mstride, int w, int lo, int hi, uint8_t *cur, uint8_t *prev) {
	long n = 4L * w;
	if (lo > 0) imgserve_cutout_row(prev, img + (lo - 1) * istride, mask + (lo - 1) * mstride, w);
	for (int y = lo; y < hi; y++) {
		uint8_t *out = f + (y - lo) * (1 + n);
		imgserve_cutout_row(cur, img + y * istride, mask + y * mstride, w);
		out[0] = 2;
		out++;
		if (y == 0) {
			memcpy(out, cur, n);
		} else {
			long i = 0;
			for (; i + 32 <= n; i += 32)
				_mm256_storeu_si256((__m256i *)(out + i), _mm256_sub_epi8(
					_mm256_loadu_si256((const __m256i *)(cur + i)), _mm256_loadu_si256((const __m256i *)(prev + i))));
			for (; i < n; i++) out[i] = (uint8_t)(cur[i] - prev[i]);
		}
		uint8_t *t = cur;
		cur = prev;
		prev = t;
	}
}
