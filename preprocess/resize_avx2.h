// AVX2 versions of resize.go's three inner loops (horizontalRGB,
// horizontalGray, verticalRow), included only by resize_avx2_amd64.go.
//
// They compute exactly what the Go loops compute: the same 22-bit integer
// weights, exact 32-bit products and sums (no sum comes near 2^31), the
// same rounding term, the same arithmetic shift and clip to 0..255. Integer
// addition is associative, so summing eight lanes or four taps at a time,
// or a weight's high and low bits apart, changes nothing:
// TestResizeKernelsMatchGo compares the two paths byte for byte. What
// changes is speed: 8 or 16 samples per instruction instead of 1.
#include "avx2.h"

#define IMGSERVE_HALF (1 << 21) // rounding term, precisionBits 22

// 4 int32 sums to 4 bytes: >> 22, clipped to 0..255 (packs then packus
// saturate exactly as clipFixed clips).
IMGSERVE_AVX2 static inline uint32_t imgserve_clip4(__m128i s) {
	__m128i v = _mm_srai_epi32(s, 22);
	v = _mm_packs_epi32(v, v);
	v = _mm_packus_epi16(v, v);
	return (uint32_t)_mm_cvtsi128_si32(v);
}

// Rows [lo, hi) of src (RGBA, 4 bytes a pixel, sw pixels, row y at src +
// y*stride) into rows [lo, hi) of dst (packed RGB, w pixels a row), with
// bounds as in resize.go's coeffs. The weights are multiplied in 16 bits
// (vpmaddwd: sixteen multiplies per instruction, where the 32-bit vpmulld
// does eight at twice the cost; that version of this pass was ~2x slower).
// A 22-bit weight does not fit 16 bits, so each is split as
// k = kh*2048 + kl with 0 <= kl < 2048; the sums over kh and over kl are
// exact (at most ~2^30 and 2^24), so kh_sum*2048 + kl_sum is the very sum
// the Go loop computes. Four taps per step: pixels i..i+3 are shuffled into
// 16-bit pairs (R_i R_i+1 G_i G_i+1 B_i B_i+1 A_i A_i+1 | the same for i+2,
// i+3), and vpmaddwd multiplies each pair by its two weights and adds
// them. kq holds, per output sample, `groups` groups (taps 4g..4g+3) of 16
// kl then 16 kh in that pairing, zero past the sample's taps.
IMGSERVE_AVX2 static void imgserve_h_rgba(const uint8_t *src, long stride, int sw, int lo, int hi,
		uint8_t *dst, int w, const long *bounds, const int16_t *kq, int groups) {
	const __m256i shuf = _mm256_setr_epi8(
		0, -1, 4, -1, 1, -1, 5, -1, 2, -1, 6, -1, 3, -1, 7, -1,
		8, -1, 12, -1, 9, -1, 13, -1, 10, -1, 14, -1, 11, -1, 15, -1);
	for (int y = lo; y < hi; y++) {
		const uint8_t *srow = src + (long)y * stride;
		uint8_t *drow = dst + (long)y * 3 * w;
		for (int xx = 0; xx < w; xx++) {
			long xmin = bounds[2 * xx];
			int n = (int)bounds[2 * xx + 1];
			int g = (n + 3) / 4;
			const uint8_t *p = srow + 4 * xmin;
			const int16_t *kk = kq + (long)xx * groups * 32;
			__m256i lo16 = _mm256_setzero_si256(), hi16 = _mm256_setzero_si256();
			// Whole groups inside the row are read in place; a last group
			// that would run past the row's end is copied out first.
			int inrow = (int)((sw - xmin) / 4);
			int j = 0;
			for (; j < g && j < inrow; j++) {
				__m256i px = _mm256_shuffle_epi8(
					_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p + 16 * j))), shuf);
				lo16 = _mm256_add_epi32(lo16, _mm256_madd_epi16(px, _mm256_loadu_si256((const __m256i *)(kk + 32 * j))));
				hi16 = _mm256_add_epi32(hi16, _mm256_madd_epi16(px, _mm256_loadu_si256((const __m256i *)(kk + 32 * j + 16))));
			}
			if (j < g) {
				uint8_t last[16] = {0};
				memcpy(last, p + 16 * j, 4 * (size_t)(n - 4 * j));
				__m256i px = _mm256_shuffle_epi8(
					_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)last)), shuf);
				lo16 = _mm256_add_epi32(lo16, _mm256_madd_epi16(px, _mm256_loadu_si256((const __m256i *)(kk + 32 * j))));
				hi16 = _mm256_add_epi32(hi16, _mm256_madd_epi16(px, _mm256_loadu_si256((const __m256i *)(kk + 32 * j + 16))));
			}
			__m128i l = _mm_add_epi32(_mm256_castsi256_si128(lo16), _mm256_extracti128_si256(lo16, 1));
			__m128i h = _mm_add_epi32(_mm256_castsi256_si128(hi16), _mm256_extracti128_si256(hi16, 1));
			__m128i s = _mm_add_epi32(_mm_add_epi32(_mm_slli_epi32(h, 11), l), _mm_set1_epi32(IMGSERVE_HALF));
			uint32_t v = imgserve_clip4(s);
			uint8_t *d = drow + 3 * xx;
			d[0] = (uint8_t)v;
			d[1] = (uint8_t)(v >> 8);
			d[2] = (uint8_t)(v >> 16);
		}
	}
}

// Rows [lo, hi) of src (one byte a pixel, sw pixels a row) into rows
// [lo, hi) of dst (w bytes a row). Eight taps per step while eight source
// bytes remain in the row; the weights past a sample's n taps are read as
// zero from kpad (ksize8 weights per sample, zero-padded).
IMGSERVE_AVX2 static void imgserve_h_gray(const uint8_t *src, long stride, int sw, int lo, int hi,
		uint8_t *dst, int w, const long *bounds, const int32_t *kpad, int ksize8) {
	for (int y = lo; y < hi; y++) {
		const uint8_t *srow = src + (long)y * stride;
		uint8_t *drow = dst + (long)y * w;
		for (int xx = 0; xx < w; xx++) {
			long xmin = bounds[2 * xx];
			int n = (int)bounds[2 * xx + 1];
			const uint8_t *p = srow + xmin;
			const int32_t *kk = kpad + (long)xx * ksize8;
			__m256i acc = _mm256_setzero_si256();
			int i = 0;
			for (; i < n && xmin + i + 8 <= sw; i += 8) {
				__m256i px = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + i)));
				acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(px, _mm256_loadu_si256((const __m256i *)(kk + i))));
			}
			__m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
			s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
			s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
			int32_t sum = _mm_cvtsi128_si32(s) + IMGSERVE_HALF;
			for (; i < n; i++) sum += (int32_t)p[i] * kk[i];
			drow[xx] = (uint8_t)imgserve_clip4(_mm_cvtsi32_si128(sum));
		}
	}
}

// Output rows [lo, hi): row yy (n bytes at out + yy*ostride) is the sum
// over its taps of the intermediate rows (n bytes each, row r at tmp +
// r*n), 32 samples per step, 8 at a time after, then one by one.
IMGSERVE_AVX2 static void imgserve_v(uint8_t *out, long ostride, const uint8_t *tmp, int n,
		int lo, int hi, int first, const long *bounds, const int32_t *k, int ksize) {
	const __m256i half = _mm256_set1_epi32(IMGSERVE_HALF);
	for (int yy = lo; yy < hi; yy++) {
		const uint8_t *base = tmp + (bounds[2 * yy] - first) * (long)n;
		int taps = (int)bounds[2 * yy + 1];
		const int32_t *kk = k + (long)yy * ksize;
		uint8_t *o = out + (long)yy * ostride;
		int i = 0;
		for (; i + 32 <= n; i += 32) {
			__m256i a0 = half, a1 = half, a2 = half, a3 = half;
			const uint8_t *r = base + i;
			for (int j = 0; j < taps; j++, r += n) {
				__m256i kv = _mm256_set1_epi32(kk[j]);
				__m256i b = _mm256_loadu_si256((const __m256i *)r);
				a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm256_castsi256_si128(b)), kv));
				a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(_mm256_castsi256_si128(b), 8)), kv));
				__m128i bh = _mm256_extracti128_si256(b, 1);
				a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(bh), kv));
				a3 = _mm256_add_epi32(a3, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(bh, 8)), kv));
			}
			// >> 22, then saturate to 16 and 8 bits: the packs work per
			// 128-bit lane, and the final permute puts the bytes in order.
			__m256i s01 = _mm256_packs_epi32(_mm256_srai_epi32(a0, 22), _mm256_srai_epi32(a1, 22));
			__m256i s23 = _mm256_packs_epi32(_mm256_srai_epi32(a2, 22), _mm256_srai_epi32(a3, 22));
			__m256i b8 = _mm256_packus_epi16(s01, s23);
			b8 = _mm256_permutevar8x32_epi32(b8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
			_mm256_storeu_si256((__m256i *)(o + i), b8);
		}
		for (; i + 8 <= n; i += 8) {
			__m256i a = half;
			const uint8_t *r = base + i;
			for (int j = 0; j < taps; j++, r += n)
				a = _mm256_add_epi32(a, _mm256_mullo_epi32(
					_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)r)), _mm256_set1_epi32(kk[j])));
			a = _mm256_srai_epi32(a, 22);
			__m128i s = _mm_packs_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
			_mm_storel_epi64((__m128i *)(o + i), _mm_packus_epi16(s, s));
		}
		for (; i < n; i++) {
			int32_t s = IMGSERVE_HALF;
			const uint8_t *r = base + i;
			for (int j = 0; j < taps; j++, r += n) s += (int32_t)*r * kk[j];
			o[i] = (uint8_t)imgserve_clip4(_mm_cvtsi32_si128(s));
		}
	}
}
