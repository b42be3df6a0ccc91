/* matmul_avx2.c: AVX2 + FMA + F16C CPU kernels: activation quantization and
 * tiles of dot products, reproducing the canonical evaluation order of
 * kernels_impl.h exactly (results equal the scalar path's bit for bit).
 *
 * The 16 canonical lanes live in two ymm accumulators, lanes 0..7 and 8..15
 * (Q8_0: even and odd blocks; Q4_0/Q5_0 and the K-quants: the lane orders of
 * kernels_impl.h).
 * Int8 products use vpmaddubsw + vpmaddwd: Q8_0 with the |w|, sign(x,w) trick
 * (activations from lyra_quantize_act are never -128), Q4_0 with the raw
 * nibbles and a -8*sum(x) correction and whole-block sums by a hadd tree
 * (Q5_0 the same with the 5-bit values and -16*sum(x)), K-quants with the
 * unsigned 4/5/6-bit values, exact int32 sums per sub-block by vpackssdw +
 * vpmaddwd (and vphaddd) trees, the sub-block scales and mins applied in
 * float as the scalar kernel does. Float weights: FMA on four ymm
 * accumulators (32 canonical lanes). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#include <immintrin.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include "core/fp16.h"
#include "kernels/kernels_impl.h"

#define INLINE static inline __attribute__((always_inline))
/* Fully unroll the small R x T loops so the accumulators live in registers.
 * Clang does that by itself (and its pragma blows up compile times under
 * -fsanitize with -fno-sanitize-recover), so only GCC gets the pragma. */
#if defined(__clang__)
#define UNROLL
#else
#define UNROLL _Pragma("GCC unroll 16")
#endif

static inline uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline float rdf(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }
static inline float h2f(const uint8_t *p) { return _cvtsh_ss(rd16(p)); }

/* Decode (one token) streams weights from memory: while a tile reads its R
 * rows, prefetch the same bytes of the next tile's R rows (R * ws ahead). The
 * address is formed as an integer (it may lie past the matrix; a prefetch
 * never faults). */
INLINE void prefetch_ahead(const uint8_t *p, size_t ahead) {
    _mm_prefetch((const char *)(uintptr_t)((uintptr_t)p + ahead), _MM_HINT_T0);
}
INLINE __m256i ld256(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)(const void *)p); }
INLINE __m128i ld128(const uint8_t *p) { return _mm_loadu_si128((const __m128i *)(const void *)p); }

/* Canonical 16-lane sum of lanes lo (0..7) and hi (8..15). */
INLINE float reduce16(__m256 lo, __m256 hi) {
    __m256 v8 = _mm256_add_ps(lo, hi);
    __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
    __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
    return _mm_cvtss_f32(_mm_add_ss(v2, _mm_movehdup_ps(v2)));
}

/* ------------------------------------------------ activations */

/* round half away from zero of |v| < 2^22, as int32 (= C roundf). */
INLINE __m256i round_away(__m256 v) {
    __m256i i = _mm256_cvttps_epi32(v);
    __m256 f = _mm256_sub_ps(v, _mm256_cvtepi32_ps(i)); /* exact */
    __m256i up = _mm256_castps_si256(_mm256_cmp_ps(f, _mm256_set1_ps(0.5f), _CMP_GE_OQ));
    __m256i dn = _mm256_castps_si256(_mm256_cmp_ps(f, _mm256_set1_ps(-0.5f), _CMP_LE_OQ));
    return _mm256_add_epi32(_mm256_sub_epi32(i, up), dn); /* masks are -1 */
}

INLINE __m256 absps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

INLINE float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* 32 int32 (in q[4]) -> 32 int8 in order. */
INLINE __m256i pack32(const __m256i q[4]) {
    __m256i a = _mm256_packs_epi32(q[0], q[1]), b = _mm256_packs_epi32(q[2], q[3]);
    __m256i c = _mm256_packs_epi16(a, b);
    return _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void act_q8_0(const float *x, uint8_t *b, int64_t n) {
    for (int64_t k = 0; k < n / 32; k++, x += 32, b += 34) {
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(x + 8 * j);
            m = _mm256_max_ps(m, absps(v[j]));
        }
        float amax = hmax(m);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = lyra_f32_to_fp16(d);
        memcpy(b, &dh, 2);
        __m256i q[4];
        for (int j = 0; j < 4; j++) q[j] = round_away(_mm256_mul_ps(v[j], _mm256_set1_ps(id)));
        _mm256_storeu_si256((__m256i *)(void *)(b + 2), pack32(q));
    }
}

static void act_q8_k(const float *x, uint8_t *b, int64_t n) {
    for (int64_t k = 0; k < n / 256; k++, x += 256, b += 292) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < 32; j++) m = _mm256_max_ps(m, absps(_mm256_loadu_ps(x + 8 * j)));
        float amax = hmax(m);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        memcpy(b, &d, 4);
        for (int g = 0; g < 8; g++) {
            __m256i q[4];
            for (int j = 0; j < 4; j++)
                q[j] = round_away(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * g + 8 * j), _mm256_set1_ps(id)));
            __m256i q8 = pack32(q);
            _mm256_storeu_si256((__m256i *)(void *)(b + 4 + 32 * g), q8);
            /* bsums of the stored bytes: sad of (x ^ 0x80) = sum(x + 128) per 8 */
            __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(q8, _mm256_set1_epi8((char)0x80)), _mm256_setzero_si256());
            for (int h = 0; h < 2; h++) {
                __m128i s2 = h ? _mm256_extracti128_si256(sad, 1) : _mm256_castsi256_si128(sad);
                int s = _mm_cvtsi128_si32(s2) + _mm_extract_epi32(s2, 2) - 16 * 128;
                int16_t s16 = (int16_t)s;
                memcpy(b + 260 + 2 * (2 * g + h), &s16, 2);
            }
        }
    }
}

int lyra_act_avx2(lyra_type at, const float *x, void *dst, int64_t n) {
    if (at == LYRA_TYPE_Q8_0) act_q8_0(x, dst, n);
    else if (at == LYRA_TYPE_Q8_K) act_q8_k(x, dst, n);
    else return 0;
    return 1;
}

/* ------------------------------------------------ Q8_0 / Q4_0 */

/* One Q4_0 block's 32 weights as the raw nibbles 0..15. */
INLINE __m256i q4_unpack(const uint8_t *p) {
    __m128i v = ld128(p + 2);
    __m256i y = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_and_si256(y, _mm256_set1_epi8(0x0F));
}

/* One Q5_0 block's 32 weights as the unsigned 5-bit values 0..31: the
 * nibbles at p + 6 and, as bit 4 of byte j, bit j of the 32-bit qh at p + 2. */
INLINE __m256i q5_unpack(const uint8_t *p) {
    __m128i v = ld128(p + 6);
    __m256i lo = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
    uint32_t qh;
    memcpy(&qh, p + 2, 4);
    /* byte j <- byte j/8 of qh, then test bit j%8 */
    __m256i h = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh),
                                    _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                     2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    h = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);
    return _mm256_or_si256(lo, _mm256_and_si256(h, _mm256_set1_epi8(0x10)));
}

/* Exact int32 lanes: sum of 4 products per lane, for block w (raw bytes wq)
 * and activation block xq. Q8_0: |w| (unsigned) with sign(x, w); Q4_0: raw
 * nibbles, corr = -8*sum4(x). */
INLINE __m256i q8_lanes(int q4, __m256i wq, __m256i xq, __m256i corr) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (q4) return _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wq, xq), ones), corr);
    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(wq), _mm256_sign_epi8(xq, wq));
    return _mm256_madd_epi16(p, ones);
}

/* -off * (sum of each 4 x): Q4_0 off 8, Q5_0 off 16. */
INLINE __m256i q4_corr(int off, __m256i xq) {
    __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8((char)off), xq), _mm256_set1_epi16(1));
    return _mm256_sub_epi32(_mm256_setzero_si256(), s);
}

/* Q8_0: per block 8 lanes of 4 products, FMA'd per lane (kernels_impl.h). */
INLINE void q8_tile(const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                    const uint8_t *a, size_t as, float *y, size_t ys) {
    const size_t wb = 34;
    const int64_t nb = n / 32;
    __m256 acc[R][T][2];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) {
        acc[r][t][0] = _mm256_setzero_ps();
        acc[r][t][1] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b += 2) {
        UNROLL for (int h = 0; h < 2; h++) {
            if (h == 1 && b + 1 >= nb) break;
            int64_t bb = b + h;
            __m256i wq[R];
            float wd[R];
            UNROLL for (int r = 0; r < R; r++) {
                const uint8_t *p = w + r * ws + bb * wb;
                if (T == 1) prefetch_ahead(p, R * ws);
                wq[r] = ld256(p + 2);
                wd[r] = h2f(p);
            }
            UNROLL for (int t = 0; t < T; t++) {
                const uint8_t *x0 = a + t * as + bb * 34;
                __m256i xq = ld256(x0 + 2);
                float xd = h2f(x0);
                UNROLL for (int r = 0; r < R; r++) {
                    __m256 f = _mm256_cvtepi32_ps(q8_lanes(0, wq[r], xq, _mm256_setzero_si256()));
                    acc[r][t][h] = _mm256_fmadd_ps(f, _mm256_set1_ps(wd[r] * xd), acc[r][t][h]);
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++)
        y[t * ys + r] = reduce16(acc[r][t][0], acc[r][t][1]);
}

/* f16 scales (at p + k*bs) of the blocks k of a group of 16 that land in
 * canonical lanes 8h..8h+7 (lane 4i+j: block 4j+i), as f32; 0 past cnt. */
INLINE __m256 q4_scales8(const uint8_t *p, size_t bs, int h, int cnt) {
    if (cnt == 16) { /* gather the 8 f16 (low halves of 32-bit reads), pack, convert */
        const __m256i k = _mm256_add_epi32(_mm256_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13), _mm256_set1_epi32(2 * h));
        __m256i g = _mm256_i32gather_epi32((const int *)(const void *)p,
                                           _mm256_mullo_epi32(k, _mm256_set1_epi32((int)bs)), 1);
        g = _mm256_shuffle_epi8(g, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1,
                                                    4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1));
        g = _mm256_permute4x64_epi64(g, 0x08); /* qwords 0, 2 */
        return _mm256_cvtph_ps(_mm256_castsi256_si128(g));
    }
    uint16_t v[8];
    for (int l = 0; l < 8; l++) {
        int k = 4 * (l & 3) + 2 * h + (l >> 2);
        v[l] = k < cnt ? rd16(p + (size_t)k * bs) : 0;
    }
    return _mm256_cvtph_ps(ld128((const uint8_t *)v));
}

/* Q4_0 (kernels_impl.h: one exact int32 sum and one FMA per block, block 4j+i
 * of each group of 16 in lane 4i+j). Per block 8 int32 lanes (vpmaddubsw +
 * vpmaddwd, -8*sum(x) correction); the blocks i, 4+i, 8+i, 12+i are summed
 * by a hadd tree into [their low-4-lane sums | high-4-lane sums], and two
 * such trees (i = 2h, 2h+1) give lanes 8h..8h+7 of the block sums.
 * Q5 (1): Q5_0 blocks, the same with 5-bit values and a -16*sum(x)
 * correction. */
INLINE void q4_tile(const int Q5, const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                    const uint8_t *a, size_t as, float *y, size_t ys) {
    const int64_t nb = n / 32;
    const size_t wb = Q5 ? 22 : 18;
    __m256 acc[R][T][2];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) {
        acc[r][t][0] = _mm256_setzero_ps();
        acc[r][t][1] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b += 16) {
        const int cnt = nb - b < 16 ? (int)(nb - b) : 16;
        UNROLL for (int h = 0; h < 2; h++) {
            __m256i H[R][T][2];
            UNROLL for (int e = 0; e < 2; e++) {
                const int i = 2 * h + e;
                __m256i X[R][T], V0[R][T];
                UNROLL for (int j = 0; j < 4; j++) {
                    const int k = 4 * j + i; /* block of the group */
                    __m256i wq[R];
                    UNROLL for (int r = 0; r < R; r++) {
                        const uint8_t *p = w + r * ws + (b + k) * wb;
                        if (T == 1 && k < cnt) prefetch_ahead(p, R * ws);
                        wq[r] = k >= cnt ? _mm256_setzero_si256() : Q5 ? q5_unpack(p) : q4_unpack(p);
                    }
                    UNROLL for (int t = 0; t < T; t++) {
                        __m256i xq = k < cnt ? ld256(a + t * as + (b + k) * 34 + 2) : _mm256_setzero_si256();
                        __m256i corr = q4_corr(Q5 ? 16 : 8, xq);
                        UNROLL for (int r = 0; r < R; r++) {
                            __m256i v = q8_lanes(1, wq[r], xq, corr);
                            if (j == 0 || j == 2) V0[r][t] = v;
                            else if (j == 1) X[r][t] = _mm256_hadd_epi32(V0[r][t], v);
                            else H[r][t][e] = _mm256_hadd_epi32(X[r][t], _mm256_hadd_epi32(V0[r][t], v));
                        }
                    }
                }
            }
            /* lane l of this half holds block 4(l&3) + 2h + (l>>2): live if < cnt */
            const __m256i kl = _mm256_add_epi32(_mm256_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13), _mm256_set1_epi32(2 * h));
            const __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), kl));
            __m256 xd[T];
            UNROLL for (int t = 0; t < T; t++) xd[t] = q4_scales8(a + t * as + b * 34, 34, h, cnt);
            UNROLL for (int r = 0; r < R; r++) {
                __m256 wd = q4_scales8(w + r * ws + b * wb, wb, h, cnt);
                UNROLL for (int t = 0; t < T; t++) {
                    __m256i s = _mm256_add_epi32(_mm256_permute2x128_si256(H[r][t][0], H[r][t][1], 0x20),
                                                 _mm256_permute2x128_si256(H[r][t][0], H[r][t][1], 0x31));
                    __m256 f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(wd, xd[t]), acc[r][t][h]);
                    /* lanes of blocks past the row keep their value (as in scalar) */
                    acc[r][t][h] = cnt == 16 ? f : _mm256_blendv_ps(acc[r][t][h], f, live);
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++)
        y[t * ys + r] = reduce16(acc[r][t][0], acc[r][t][1]);
}

/* ------------------------------------------------ K-quants */

/* The 8 6-bit scales (sc) and mins (m) of a Q4_K/Q5_K block's 12 scale bytes,
 * one byte each, sub-block j in byte j. */
INLINE void k4_scales(const uint8_t *s, uint64_t *sc, uint64_t *m) {
    uint32_t u[3];
    memcpy(u, s, 12);
    *sc = (u[0] & 0x3f3f3f3fu) | (uint64_t)((u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4)) << 32;
    *m = (u[1] & 0x3f3f3f3fu) | (uint64_t)(((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4)) << 32;
}

/* The 32 unsigned weights of half hf (0, 1) of group g (elements
 * 64g + 32hf .. +31) of a K-quant block. */
INLINE __m256i k_quants(int kind, const uint8_t *blk, int g, int hf) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    if (kind == 4 || kind == 5) {
        __m256i v = ld256(blk + (kind == 4 ? 16 : 48) + 32 * g);
        if (hf) v = _mm256_srli_epi16(v, 4);
        v = _mm256_and_si256(v, m4);
        if (kind == 4) return v;
        __m256i hb = _mm256_srl_epi16(ld256(blk + 16), _mm_cvtsi32_si128(2 * g + hf));
        hb = _mm256_and_si256(_mm256_slli_epi16(hb, 4), _mm256_set1_epi8(0x10));
        return _mm256_or_si256(v, hb);
    }
    int h = g >> 1, odd = g & 1;
    __m256i ql = ld256(blk + 64 * h + 32 * hf);
    if (odd) ql = _mm256_srli_epi16(ql, 4);
    ql = _mm256_and_si256(ql, m4);
    __m256i hb = _mm256_srl_epi16(ld256(blk + 128 + 32 * h), _mm_cvtsi32_si128(4 * odd + 2 * hf));
    hb = _mm256_and_si256(_mm256_slli_epi16(hb, 4), _mm256_set1_epi8(0x30));
    return _mm256_or_si256(ql, hb);
}

/* Exact int32 sums of each 4 products q*x (q unsigned, x signed). */
INLINE __m256i k_sums4(__m256i q, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, x), _mm256_set1_epi16(1));
}

/* The 8 unsigned bytes of v at k, k+1, k+4, k+5, k+8, k+9, k+12, k+13 as
 * int32 (k = 0 or 2). */
INLINE __m256i k4_pick8(__m128i v, int k) {
    return _mm256_cvtepu8_epi32(_mm_shuffle_epi8(
        v, _mm_add_epi8(_mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 0, 1, 4, 5, 8, 9, 12, 13), _mm_set1_epi8((char)k))));
}

/* Q4_K (kind 4) / Q5_K (5) (kernels_impl.h: one exact int32 sum per 32-element
 * sub-block j, FMA'd into lane LYRA_K4_LANE(b, j), then the mins' FMA). Super-
 * blocks go by pairs (s, s+1): accumulator 0 holds lanes 0..3 (sub-blocks
 * 0, 1, 4, 5 of s) and 4..7 (the same of s+1), accumulator 1 lanes 8..15
 * (sub-blocks 2, 3, 6, 7). A sub-block gives 8 int32 sums of 4 products
 * (vpmaddubsw + vpmaddwd); vpackssdw + vpmaddwd of sub-blocks 0 and 1 give,
 * in each 128-bit half, [2 sums of 8 of 0, 2 of 1] (int16 holds a sum of 8
 * products: 8*31*128 < 2^15), the same of 4 and 5, and vpackssdw + vpmaddwd
 * of those two: [0 1 4 5] over the half (or 2 3 6 7). The low and high halves
 * are added across the pair (s's in the low 128 bits, s+1's in the high: the
 * lanes' order, exact int32 sums). The factors are formed in float exactly as
 * in the scalar kernel. A lone last super-block leaves lanes 4..7, 12..15 as
 * they are: its partner's sums and factors are all zero, and acc + (+-0) =
 * acc since the accumulators are never -0. */
INLINE void k4_tile(const int kind, const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                    const uint8_t *a, size_t as, float *y, size_t ys) {
    const size_t wb = kind == 4 ? 144 : 176;
    const int64_t nsb = n / 256;
    const __m256 neg = _mm256_set1_ps(-0.0f);
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256 acc[R][T][2];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) {
        acc[r][t][0] = _mm256_setzero_ps();
        acc[r][t][1] = _mm256_setzero_ps();
    }
    for (int64_t s = 0; s < nsb; s += 2) {
        const int two = s + 1 < nsb;
        /* per row: the scales and mins of s (low 8 bytes) and s+1 (high 8), d and dmin */
        __m128i sv[R], mv[R];
        float d[R][2], dm[R][2];
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *b0 = w + r * ws + s * wb;
            uint64_t sc0, m0, sc1 = 0, m1 = 0;
            k4_scales(b0 + 4, &sc0, &m0);
            d[r][0] = h2f(b0);
            dm[r][0] = h2f(b0 + 2);
            d[r][1] = dm[r][1] = 0.0f;
            if (two) {
                k4_scales(b0 + wb + 4, &sc1, &m1);
                d[r][1] = h2f(b0 + wb);
                dm[r][1] = h2f(b0 + wb + 2);
            }
            sv[r] = _mm_set_epi64x((long long)sc1, (long long)sc0);
            mv[r] = _mm_set_epi64x((long long)m1, (long long)m0);
        }
        UNROLL for (int c = 0; c < 2; c++) {
            /* H[r][t][h]: super-block s + h's sums [low 128 bits | high] */
            __m256i H[R][T][2];
            UNROLL for (int h = 0; h < 2; h++) {
                if (h == 1 && !two) {
                    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++)
                        H[r][t][1] = _mm256_setzero_si256();
                    break;
                }
                const int64_t sb = s + h;
                if (T == 1 && c == 0)
                    UNROLL for (int r = 0; r < R; r++) for (size_t off = 0; off < wb; off += 64)
                        prefetch_ahead(w + r * ws + sb * wb + off, R * ws);
                __m256i U[R][T];
                UNROLL for (int k = 0; k < 2; k++) {
                    const int g = 2 * k + c; /* sub-blocks 2g, 2g+1 */
                    __m256i V0[R][T];
                    UNROLL for (int hf = 0; hf < 2; hf++) {
                        __m256i q[R];
                        UNROLL for (int r = 0; r < R; r++) q[r] = k_quants(kind, w + r * ws + sb * wb, g, hf);
                        UNROLL for (int t = 0; t < T; t++) {
                            __m256i xv = ld256(a + t * as + sb * 292 + 4 + 64 * g + 32 * hf);
                            UNROLL for (int r = 0; r < R; r++) {
                                __m256i v = k_sums4(q[r], xv);
                                if (hf == 0) {
                                    V0[r][t] = v;
                                } else {
                                    __m256i p = _mm256_madd_epi16(_mm256_packs_epi32(V0[r][t], v), ones16);
                                    if (k == 0) U[r][t] = p;
                                    else H[r][t][h] = _mm256_madd_epi16(_mm256_packs_epi32(U[r][t], p), ones16);
                                }
                            }
                        }
                    }
                }
            }
            /* per token: a.d and (float)B_j * a.d, B_j = bsum[2j] + bsum[2j+1] */
            __m256 adv[T], BA[T];
            UNROLL for (int t = 0; t < T; t++) {
                const uint8_t *a0 = a + t * as + s * 292;
                adv[t] = _mm256_set_m128(_mm_set1_ps(two ? rdf(a0 + 292) : 0.0f), _mm_set1_ps(rdf(a0)));
                /* [B0 B1 B4 B5 | B2 B3 B6 B7] of a super-block */
                __m256i B0 = _mm256_permute4x64_epi64(_mm256_madd_epi16(ld256(a0 + 260), ones16), 0xD8);
                __m256i B1 = two ? _mm256_permute4x64_epi64(_mm256_madd_epi16(ld256(a0 + 292 + 260), ones16), 0xD8)
                                 : _mm256_setzero_si256();
                __m256i Bc = c ? _mm256_permute2x128_si256(B0, B1, 0x31) : _mm256_permute2x128_si256(B0, B1, 0x20);
                BA[t] = _mm256_mul_ps(_mm256_cvtepi32_ps(Bc), adv[t]);
            }
            UNROLL for (int r = 0; r < R; r++) {
                /* (sc_j * d) and -(min_j * dmin) in the lanes' order */
                __m256 dv = _mm256_set_m128(_mm_set1_ps(d[r][1]), _mm_set1_ps(d[r][0]));
                __m256 dmv = _mm256_set_m128(_mm_set1_ps(dm[r][1]), _mm_set1_ps(dm[r][0]));
                __m256 SD = _mm256_mul_ps(_mm256_cvtepi32_ps(k4_pick8(sv[r], 2 * c)), dv);
                __m256 NM = _mm256_xor_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(k4_pick8(mv[r], 2 * c)), dmv), neg);
                UNROLL for (int t = 0; t < T; t++) {
                    __m256i D = _mm256_add_epi32(_mm256_permute2x128_si256(H[r][t][0], H[r][t][1], 0x20),
                                                 _mm256_permute2x128_si256(H[r][t][0], H[r][t][1], 0x31));
                    acc[r][t][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(D), _mm256_mul_ps(SD, adv[t]), acc[r][t][c]);
                    acc[r][t][c] = _mm256_fmadd_ps(BA[t], NM, acc[r][t][c]);
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++)
        y[t * ys + r] = reduce16(acc[r][t][0], acc[r][t][1]);
}

/* Q6_K (kernels_impl.h: one exact int32 sum of (q-32)*x per 16-element
 * sub-block j, FMA'd into lane LYRA_K6_LANE(j)). Half hf of group g (32
 * elements) is sub-blocks 4g+2hf (low 128 bits) and 4g+2hf+1 (high). Per
 * half, 4 int32 sums of 4 products (vpmaddubsw + vpmaddwd) of groups 0 and 1
 * go through vpackssdw + vpmaddwd (int16 holds a sum of 4: 4*63*128 < 2^15)
 * to [2 sums of 8 of g 0, 2 of g 1], the same for groups 2 and 3, and vphaddd
 * of those leaves [sums of g = 0..3 in the low half | in the high], i.e.
 * lanes 0..7 (hf 0: sub-blocks 0 4 8 12 1 5 9 13) and 8..15 (hf 1) in
 * canonical order; sum(q*x) - 32*bsum[j] (exact) is then FMA'd with
 * ((float)sc_j * d) * a.d as in the scalar kernel. */
INLINE void k6_tile(const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                    const uint8_t *a, size_t as, float *y, size_t ys) {
    const size_t wb = 210;
    const __m256i ones16 = _mm256_set1_epi16(1);
    __m256 acc[R][T][2];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) {
        acc[r][t][0] = _mm256_setzero_ps();
        acc[r][t][1] = _mm256_setzero_ps();
    }
    for (int64_t s = 0; s < n / 256; s++) {
        /* per row: sc_j * d, lanes 0..7: j = 0 4 8 12 1 5 9 13, 8..15: 2 6 10 14 3 7 11 15 */
        __m256 SD[R][2];
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *blk = w + r * ws + s * wb;
            if (T == 1)
                for (size_t off = 0; off < wb; off += 64) prefetch_ahead(blk + off, R * ws);
            __m128i sc = _mm_shuffle_epi8(ld128(blk + 192),
                                          _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
            __m256 dv = _mm256_set1_ps(h2f(blk + 208));
            SD[r][0] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc)), dv);
            SD[r][1] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8))), dv);
        }
        UNROLL for (int hf = 0; hf < 2; hf++) {
            __m256i X[R][T], V0[R][T];
            UNROLL for (int g = 0; g < 4; g++) {
                __m256i q[R];
                UNROLL for (int r = 0; r < R; r++) q[r] = k_quants(6, w + r * ws + s * wb, g, hf);
                UNROLL for (int t = 0; t < T; t++) {
                    __m256i xv = ld256(a + t * as + s * 292 + 4 + 64 * g + 32 * hf);
                    UNROLL for (int r = 0; r < R; r++) {
                        __m256i v = k_sums4(q[r], xv);
                        if (g == 0 || g == 2) {
                            V0[r][t] = v;
                        } else {
                            /* per half: [2 sums of 8 of g-1, 2 of g] */
                            __m256i p = _mm256_madd_epi16(_mm256_packs_epi32(V0[r][t], v), ones16);
                            X[r][t] = g == 1 ? p : _mm256_hadd_epi32(X[r][t], p);
                        }
                    }
                }
            }
            UNROLL for (int t = 0; t < T; t++) {
                const uint8_t *a0 = a + t * as + s * 292;
                /* 32 * bsum[j] in the lanes' order */
                const __m128i pk = _mm_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15);
                __m128i lo = _mm_shuffle_epi8(ld128(a0 + 260), pk), hi = _mm_shuffle_epi8(ld128(a0 + 276), pk);
                __m128i bs = hf ? _mm_unpackhi_epi32(lo, hi) : _mm_unpacklo_epi32(lo, hi);
                __m256i corr = _mm256_slli_epi32(_mm256_cvtepi16_epi32(bs), 5);
                __m256 adv = _mm256_set1_ps(rdf(a0));
                UNROLL for (int r = 0; r < R; r++) {
                    __m256 Df = _mm256_cvtepi32_ps(_mm256_sub_epi32(X[r][t], corr));
                    acc[r][t][hf] = _mm256_fmadd_ps(Df, _mm256_mul_ps(SD[r][hf], adv), acc[r][t][hf]);
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++)
        y[t * ys + r] = reduce16(acc[r][t][0], acc[r][t][1]);
}

INLINE void k_tile(const int kind, const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                   const uint8_t *a, size_t as, float *y, size_t ys) {
    if (kind == 6) k6_tile(R, T, n, w, ws, a, as, y, ys);
    else k4_tile(kind, R, T, n, w, ws, a, as, y, ys);
}

/* ------------------------------------------------ float weights */

/* 8 weights of type wt at element i of row p. */
INLINE __m256 f_load(lyra_type wt, const uint8_t *p, int64_t i) {
    if (wt == LYRA_TYPE_F32) return _mm256_loadu_ps((const float *)(const void *)(p + 4 * i));
    __m128i h = ld128(p + 2 * i);
    if (wt == LYRA_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* Float tile, R <= 3 rows x 1 token; named accumulators a{k}_{r} (lanes
 * 8k..8k+7) since GCC keeps arrays of vectors in memory. The tail (n % 32)
 * finishes the canonical lanes with scalar fmaf. */
#define F_FOR_R(X) X(0) X(1) X(2)
#define F_DECL(r) __m256 a0_##r = _mm256_setzero_ps(), a1_##r = a0_##r, a2_##r = a0_##r, a3_##r = a0_##r;
#define F_STEP(r)                                                                  \
    if (r < R) {                                                                   \
        const uint8_t *p = w + r * ws;                                             \
        for (size_t off = 0; off < 32 * eb; off += 64) prefetch_ahead(p + i * eb + off, R * ws); \
        a0_##r = _mm256_fmadd_ps(f_load(wt, p, i), x0, a0_##r);                    \
        a1_##r = _mm256_fmadd_ps(f_load(wt, p, i + 8), x1, a1_##r);                \
        a2_##r = _mm256_fmadd_ps(f_load(wt, p, i + 16), x2, a2_##r);               \
        a3_##r = _mm256_fmadd_ps(f_load(wt, p, i + 24), x3, a3_##r);               \
    }
#define F_OUT(r)                                                                         \
    if (r < R) {                                                                         \
        if (i < n) {                                                                     \
            float lanes[32];                                                             \
            _mm256_storeu_ps(lanes, a0_##r);                                             \
            _mm256_storeu_ps(lanes + 8, a1_##r);                                         \
            _mm256_storeu_ps(lanes + 16, a2_##r);                                        \
            _mm256_storeu_ps(lanes + 24, a3_##r);                                        \
            f_tail(wt, w + r * ws, x, i, n, lanes);                                      \
            a0_##r = _mm256_loadu_ps(lanes);                                             \
            a1_##r = _mm256_loadu_ps(lanes + 8);                                         \
            a2_##r = _mm256_loadu_ps(lanes + 16);                                        \
            a3_##r = _mm256_loadu_ps(lanes + 24);                                        \
        }                                                                                \
        y[r] = reduce16(_mm256_add_ps(a0_##r, a2_##r), _mm256_add_ps(a1_##r, a3_##r));   \
    }

/* Elements i..n-1 into the canonical lanes, in order (same fmaf as scalar). */
static void f_tail(lyra_type wt, const uint8_t *p, const float *x, int64_t i, int64_t n, float *lanes) {
    for (int64_t e = i; e < n; e++) {
        float v;
        if (wt == LYRA_TYPE_F32) memcpy(&v, p + 4 * e, 4);
        else if (wt == LYRA_TYPE_F16) v = h2f(p + 2 * e);
        else v = lyra_bf16_to_f32(rd16(p + 2 * e));
        lanes[e & 31] = fmaf(v, x[e], lanes[e & 31]);
    }
}

INLINE void f_tile(const lyra_type wt, const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                   const uint8_t *a, size_t as, float *y, size_t ys) {
    (void)T; /* always 1 */
    (void)as;
    (void)ys;
    const float *x = (const float *)(const void *)a;
    const size_t eb = wt == LYRA_TYPE_F32 ? 4 : 2; /* bytes per weight */
    F_FOR_R(F_DECL)
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
        __m256 x2 = _mm256_loadu_ps(x + i + 16), x3 = _mm256_loadu_ps(x + i + 24);
        F_FOR_R(F_STEP)
    }
    F_FOR_R(F_OUT)
}

/* ------------------------------------------------ dispatch */

#define Q8_RP 2
#define Q8_TP 2
#define Q8_RD 4
#define Q4_RP 2
#define Q4_TP 2
#define Q4_RD 2
#define K_RP 2
#define K_TP 2
#define K_RD 2
#define F_RP 3
#define F_TP 1
#define F_RD 3

_Static_assert(F_RP <= 3 && F_RD <= 3 && F_TP == 1, "f_tile handles up to 3 x 1");

void lyra_shape_avx2(lyra_type wt, int64_t ntok, int *R, int *T) {
    int k = wt == LYRA_TYPE_Q4_K || wt == LYRA_TYPE_Q5_K || wt == LYRA_TYPE_Q6_K;
    int q = wt == LYRA_TYPE_Q8_0;
    if (wt == LYRA_TYPE_Q4_0 || wt == LYRA_TYPE_Q5_0) {
        *R = ntok <= 1 ? Q4_RD : Q4_RP;
        *T = ntok <= 1 ? 1 : Q4_TP;
    } else if (ntok <= 1) {
        *R = q ? Q8_RD : k ? K_RD : F_RD;
        *T = 1;
    } else {
        *R = q ? Q8_RP : k ? K_RP : F_RP;
        *T = q ? Q8_TP : k ? K_TP : F_TP;
    }
}

#define K_Q8(R_, T_, W_, A_, Y_) q8_tile(R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_Q4(R_, T_, W_, A_, Y_) q4_tile(0, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_Q5(R_, T_, W_, A_, Y_) q4_tile(1, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_K4(R_, T_, W_, A_, Y_) k_tile(4, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_K5(R_, T_, W_, A_, Y_) k_tile(5, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_K6(R_, T_, W_, A_, Y_) k_tile(6, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_F32(R_, T_, W_, A_, Y_) f_tile(LYRA_TYPE_F32, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_F16(R_, T_, W_, A_, Y_) f_tile(LYRA_TYPE_F16, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_BF16(R_, T_, W_, A_, Y_) f_tile(LYRA_TYPE_BF16, R_, T_, n, W_, ws, A_, as, Y_, ys)

/* One function per weight type (keeps functions small for the compiler). */
#define DEF_COVER(NAME, KERN, RP, TP, RD)                                                           \
    static __attribute__((noinline)) void NAME(int64_t n, const uint8_t *w, size_t ws, int nr,     \
                                               const uint8_t *a, size_t as, int nt, float *y, size_t ys) { \
        LYRA_TILE_COVER(KERN, RP, TP, RD);                                                          \
    }
DEF_COVER(cover_q8, K_Q8, Q8_RP, Q8_TP, Q8_RD)
DEF_COVER(cover_q4, K_Q4, Q4_RP, Q4_TP, Q4_RD)
DEF_COVER(cover_q5, K_Q5, Q4_RP, Q4_TP, Q4_RD)
DEF_COVER(cover_k4, K_K4, K_RP, K_TP, K_RD)
DEF_COVER(cover_k5, K_K5, K_RP, K_TP, K_RD)
DEF_COVER(cover_k6, K_K6, K_RP, K_TP, K_RD)
DEF_COVER(cover_f32, K_F32, F_RP, F_TP, F_RD)
DEF_COVER(cover_f16, K_F16, F_RP, F_TP, F_RD)
DEF_COVER(cover_bf16, K_BF16, F_RP, F_TP, F_RD)

int lyra_tile_avx2(lyra_type wt, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *a, size_t as,
       int nt, float *y, size_t ys) {
    void (*f)(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *, size_t);
    switch (wt) {
    case LYRA_TYPE_Q8_0: f = cover_q8; break;
    case LYRA_TYPE_Q4_0: f = cover_q4; break;
    case LYRA_TYPE_Q5_0: f = cover_q5; break;
    case LYRA_TYPE_Q4_K: f = cover_k4; break;
    case LYRA_TYPE_Q5_K: f = cover_k5; break;
    case LYRA_TYPE_Q6_K: f = cover_k6; break;
    case LYRA_TYPE_F32: f = cover_f32; break;
    case LYRA_TYPE_F16: f = cover_f16; break;
    case LYRA_TYPE_BF16: f = cover_bf16; break;
    default: return 0;
    }
    if (nr > 0 && nt > 0) f(n, w, ws, nr, a, as, nt, y, ys);
    return 1;
}
