/* matmul_avx512.c: AVX-512 (F, BW, VL, DQ, VNNI) CPU kernels: activation
 * quantization and tiles of dot products, reproducing the canonical
 * evaluation order of kernels_impl.h exactly (so results equal the scalar
 * path's bit for bit).
 *
 * Q8_0: a zmm holds a PAIR of 32-element blocks; int8 products go through
 * vpdpbusd (unsigned x signed), with the weights made unsigned (w+128) and
 * the accumulator started at the correction -128*sum(x) per 4-byte lane, so
 * each int32 lane is exactly sum of 4 products w*x. Q4_0: whole-block int32
 * sums from vpdpbusd on the raw nibbles, 16 blocks reduced into one zmm by a
 * transpose-add, then one FMA per block (see q4_tile); lyra_matmul's
 * batches instead transpose the weights (q4s_tile, q4w_tile on a repacked
 * row block) so that 8 vpdpbusd leave each block's sum in its lane.
 * K-quants: whole sub-block int32 sums, as Q4_0's blocks: decode (kd_tile)
 * by vpdpbusd and a transpose-add, batches (kw_tile) on repacked weights
 * with 4 or 8 vpdpbusd per sub-block lane. Float weights: FMA on two zmm
 * accumulators (32 canonical lanes).
 * lyra_matmul feeds Q8_0/Q4_0/K-quant tiles a private activation layout
 * (scales and corrections precomputed, see lyra_mm_act_avx512), and decode
 * tiles (one token) prefetch the next tile's weight rows. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "core/fp16.h"
#include "kernels/kernels_impl.h"
#include "kernels/prefetch.h"

#define INLINE static inline __attribute__((always_inline))
/* Upper bounds of a tile's rows and tokens: the tiles' register arrays have
 * these fixed sizes (GCC keeps variable-length arrays of vectors in memory,
 * which halves the FMA rate); only [0, R) x [0, T) is used. */
#define TRM 8
#define TTM 6
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

/* Canonical 16-lane sum: [l]+[l+8], [l]+[l+4], [l]+[l+2], [0]+[1]. */
INLINE float reduce16(__m512 a) {
    __m256 v8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
    __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
    return _mm_cvtss_f32(_mm_add_ss(v2, _mm_movehdup_ps(v2)));
}

/* 16 floats [h(p0) x8, h(p1) x8] from two f16 fields. */
INLINE __m512 pair_scale(const uint8_t *p0, const uint8_t *p1) {
    __m256i h = _mm256_mask_set1_epi16(_mm256_set1_epi16((short)rd16(p0)), 0xFF00, (short)rd16(p1));
    return _mm512_cvtph_ps(h);
}

/* ------------------------------------------------ activations */

/* round half away from zero of |v| < 2^22, as int32 (= C roundf). */
INLINE __m512i round_away(__m512 v) {
    __m512i i = _mm512_cvttps_epi32(v);
    __m512 f = _mm512_sub_ps(v, _mm512_cvtepi32_ps(i)); /* exact */
    __mmask16 up = _mm512_cmp_ps_mask(f, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __mmask16 dn = _mm512_cmp_ps_mask(f, _mm512_set1_ps(-0.5f), _CMP_LE_OQ);
    i = _mm512_mask_add_epi32(i, up, i, _mm512_set1_epi32(1));
    return _mm512_mask_sub_epi32(i, dn, i, _mm512_set1_epi32(1));
}

INLINE __m512 absps(__m512 v) { return _mm512_abs_ps(v); }

static void act_q8_0(const float *x, uint8_t *b, int64_t n) {
    for (int64_t k = 0; k < n / 32; k++, x += 32, b += 34) {
        __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(absps(x0), absps(x1)));
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = lyra_f32_to_fp16(d);
        memcpy(b, &dh, 2);
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = round_away(_mm512_mul_ps(x0, vid)), q1 = round_away(_mm512_mul_ps(x1, vid));
        _mm_storeu_si128((__m128i *)(void *)(b + 2), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(void *)(b + 18), _mm512_cvtepi32_epi8(q1));
    }
}

static void act_q8_k(const float *x, uint8_t *b, int64_t n) {
    for (int64_t k = 0; k < n / 256; k++, x += 256, b += 292) {
        __m512 m = _mm512_setzero_ps();
        for (int j = 0; j < 16; j++) m = _mm512_max_ps(m, absps(_mm512_loadu_ps(x + 16 * j)));
        float amax = _mm512_reduce_max_ps(m);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        memcpy(b, &d, 4);
        __m512 vid = _mm512_set1_ps(id);
        for (int j = 0; j < 16; j++) {
            __m512i q = round_away(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * j), vid));
            __m128i q8 = _mm512_cvtepi32_epi8(q);
            _mm_storeu_si128((__m128i *)(void *)(b + 4 + 16 * j), q8);
            int16_t s = (int16_t)_mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(q8)); /* of the stored bytes */
            memcpy(b + 260 + 2 * j, &s, 2);
        }
    }
}

int lyra_act_avx512(lyra_type at, const float *x, void *dst, int64_t n) {
    if (at == LYRA_TYPE_Q8_0) act_q8_0(x, dst, n);
    else if (at == LYRA_TYPE_Q8_K) act_q8_k(x, dst, n);
    else return 0;
    return 1;
}

/* ------------------------------------------------ Q8_0 */

/* Weight pair (blocks b, b+1 of a Q8_0 row) as unsigned bytes (w + 128). */
INLINE __m512i w_pair(const uint8_t *p0, const uint8_t *p1) {
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(p0 + 2))),
                                   _mm256_loadu_si256((const __m256i *)(const void *)(p1 + 2)), 1);
    return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
}

/* Last (odd) block alone in the low half, zeros above. */
INLINE __m512i w_one(const uint8_t *p0) {
    __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(p0 + 2));
    return _mm512_zextsi256_si512(_mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)));
}

/* Q8_0 tile on standard Q8_0 activations (lyra_vec_dot). */
INLINE void q8_tile(const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                    const uint8_t *a, size_t as, float *y, size_t ys) {
    const size_t wb = 34;
    const int64_t nb = n / 32;
    const __m512i kc = _mm512_set1_epi8((char)0x80);
    __m512 acc[TRM][TTM];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m512i wq[TRM];
        __m512 wd[TRM];
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *p0 = w + r * ws + b * wb;
            wq[r] = w_pair(p0, p0 + wb);
            wd[r] = pair_scale(p0, p0 + wb);
        }
        UNROLL for (int t = 0; t < T; t++) {
            const uint8_t *x0 = a + t * as + b * 34;
            __m512i xq = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(x0 + 2))),
                _mm256_loadu_si256((const __m256i *)(const void *)(x0 + 36)), 1);
            __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(),
                                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), kc, xq));
            __m512 xd = pair_scale(x0, x0 + 34);
            UNROLL for (int r = 0; r < R; r++) {
                __m512i p = _mm512_dpbusd_epi32(corr, wq[r], xq);
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(wd[r], xd), acc[r][t]);
            }
        }
    }
    if (b < nb) { /* odd block count: the last block goes to lanes 0..7 */
        __m512i wq[TRM];
        __m512 wd[TRM];
        UNROLL for (int r = 0; r < R; r++) {
            const uint8_t *p0 = w + r * ws + b * wb;
            wq[r] = w_one(p0);
            wd[r] = _mm512_set1_ps(h2f(p0));
        }
        UNROLL for (int t = 0; t < T; t++) {
            const uint8_t *x0 = a + t * as + b * 34;
            __m512i xq = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(x0 + 2)));
            __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(),
                                             _mm512_dpbusd_epi32(_mm512_setzero_si512(), kc, xq));
            __m512 xd = _mm512_set1_ps(h2f(x0));
            UNROLL for (int r = 0; r < R; r++) {
                __m512i p = _mm512_dpbusd_epi32(corr, wq[r], xq);
                acc[r][t] = _mm512_mask3_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(wd[r], xd), acc[r][t],
                                                  0x00FF);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) y[t * ys + r] = reduce16(acc[r][t]);
}

/* ------------------------------------------------ Q4_0
 * Canonical order (kernels_impl.h): each block's 32 products summed exactly in
 * int32, then one FMA per block into lane LYRA_Q4_LANE(b). Work goes in
 * groups of 16 blocks; block 4j+i of a group (quad j, position i) lands in
 * lane 4i+j. Per quad and row: one zmm holds the 4 blocks' 16 nibble bytes
 * (128-bit lane i = block 4j+i); low and high nibbles (elements 0..15 and
 * 16..31) go through two vpdpbusd against activations laid out to match,
 * giving 4 int32 partial sums per block. The 4 quads' sums are then reduced
 * by a 4x4 transpose-add (two rounds of unpack + add) into one zmm of 16
 * block sums in lane order, plus -8 * (block sum of x) for the nibble offset,
 * converted once and FMA'd with the 16 products d_w * d_x.
 *
 * The activations of one group, as this tile reads them (Q4G bytes):
 *   [128j, 128j+64): low halves (elements 0..15) of blocks 4j..4j+3
 *   [128j+64, 128j+128): high halves (elements 16..31) of the same blocks
 *   [512, 576): int32 corr[16], lane order: -8 * sum of the block's 32 x
 *   [576, 640): f32 xd[16], lane order: the block's f16 scale as f32
 * Blocks past the row's end are zeros. */
#define Q4G 640

/* Q8_0 activation blocks a[0..cnt) (cnt <= 16) -> one group P (Q4G bytes). */
static void q4_pack_group(const uint8_t *a, int cnt, uint8_t *P) {
    memset(P, 0, Q4G);
    int32_t corr[16] = {0};
    float xd[16] = {0};
    for (int k = 0; k < cnt; k++) {
        const uint8_t *blk = a + 34 * k;
        int j = k >> 2, i = k & 3, l = 4 * i + j;
        memcpy(P + 128 * j + 16 * i, blk + 2, 16);
        memcpy(P + 128 * j + 64 + 16 * i, blk + 18, 16);
        int s = 0;
        for (int e = 0; e < 32; e++) s += (int8_t)blk[2 + e];
        corr[l] = -8 * s;
        xd[l] = h2f(blk);
    }
    memcpy(P + 512, corr, 64);
    memcpy(P + 576, xd, 64);
}

/* The 16 nibble bytes of blocks p, p+18, p+36, p+54 (nblk of them, the
 * rest zero) in the four 128-bit lanes of a zmm. A full quad is one 64-byte
 * load and one 16-byte load merged by a word permute (qs start at byte 2 of
 * each 18-byte block, so at word boundaries). */
INLINE __m512i q4_quad(const uint8_t *p, int nblk) {
    if (nblk == 4) {
        const __m512i idx = _mm512_set_epi16(39, 38, 37, 36, 35, 34, 33, 32, 26, 25, 24, 23, 22, 21, 20, 19,
                                             17, 16, 15, 14, 13, 12, 11, 10, 8, 7, 6, 5, 4, 3, 2, 1);
        __m512i lo = _mm512_loadu_si512(p);
        __m512i hi = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)(p + 56)));
        return _mm512_permutex2var_epi16(lo, idx, hi);
    }
    __m512i v = _mm512_setzero_si512();
    for (int i = 0; i < nblk; i++)
        v = _mm512_mask_broadcast_i32x4(v, (__mmask16)(0xFu << (4 * i)),
                                        _mm_loadu_si128((const __m128i *)(const void *)(p + 18 * i + 2)));
    return v;
}

/* f32 d_w of the group's blocks in lane order (lanes of blocks >= cnt: 0). */
INLINE __m512 q4_wscales(const uint8_t *p, __mmask16 m) {
    const __m512i vindex = _mm512_setr_epi32(0, 72, 144, 216, 18, 90, 162, 234, 36, 108, 180, 252, 54, 126,
                                             198, 270); /* lane 4i+j: block 4j+i, 18 bytes each */
    __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vindex, p, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
}

/* 4x4 transpose-add, step 1: per 128-bit lane [a0+a2, b0+b2, a1+a3, b1+b3]. */
INLINE __m512i tadd32(__m512i a, __m512i b) {
    return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
}
/* Step 2: per 128-bit lane [sum a, sum b, sum c, sum d] from tadd32(a,b), tadd32(c,d). */
INLINE __m512i tadd64(__m512i ab, __m512i cd) {
    return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}

/* Q4_0 tile, R rows x T tokens. a: T activation rows, each either in the
 * packed layout (pk = 1: ceil(nb/16) groups of Q4G bytes) or standard Q8_0
 * blocks (pk = 0: packed here, a group at a time, into a local buffer). */
INLINE void q4_tile(const int pk, const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                    const uint8_t *a, size_t as, float *y, size_t ys) {
    const int64_t nb = n / 32;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    uint8_t buf[pk ? 1 : TTM][pk ? 1 : Q4G] __attribute__((aligned(64)));
    __m512 acc[TRM][TTM];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 16) {
        const int cnt = nb - b < 16 ? (int)(nb - b) : 16;
        const uint8_t *P[TTM];
        UNROLL for (int t = 0; t < T; t++) {
            if (pk) {
                P[t] = a + t * as + (b / 16) * Q4G;
            } else {
                q4_pack_group(a + t * as + b * 34, cnt, buf[t]);
                P[t] = buf[t];
            }
        }
        /* lanes of blocks that exist: lane 4i+j holds block 4j+i < cnt */
        __mmask16 m = 0;
        for (int l = 0; l < 16; l++) m |= (__mmask16)((4 * (l & 3) + (l >> 2) < cnt) << l);
        __m512i h01[TRM][TTM], s[TRM][TTM];
        UNROLL for (int j = 0; j < 4; j++) {
            const int nblk = cnt - 4 * j >= 4 ? 4 : cnt - 4 * j;
            __m512i lo[TRM], hi[TRM];
            UNROLL for (int r = 0; r < R; r++) {
                const uint8_t *p = w + r * ws + (b + 4 * j) * 18;
                if (T == 1) {
                    lyra_prefetch_ahead(p, R * ws);
                    lyra_prefetch_ahead(p + 64, R * ws);
                }
                __m512i v = nblk > 0 ? q4_quad(p, nblk) : _mm512_setzero_si512();
                lo[r] = _mm512_and_si512(v, m4);
                hi[r] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
            UNROLL for (int t = 0; t < T; t++) {
                __m512i xl = _mm512_loadu_si512(P[t] + 128 * j), xh = _mm512_loadu_si512(P[t] + 128 * j + 64);
                UNROLL for (int r = 0; r < R; r++) {
                    __m512i v = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[r], xl);
                    v = _mm512_dpbusd_epi32(v, hi[r], xh);
                    if (j == 0 || j == 2) s[r][t] = v;
                    else if (j == 1) h01[r][t] = tadd32(s[r][t], v);
                    else s[r][t] = tadd64(h01[r][t], tadd32(s[r][t], v));
                }
            }
        }
        __m512 dw[TRM];
        UNROLL for (int r = 0; r < R; r++) dw[r] = q4_wscales(w + r * ws + b * 18, m);
        UNROLL for (int t = 0; t < T; t++) {
            __m512i corr = _mm512_loadu_si512(P[t] + 512);
            __m512 xd = _mm512_loadu_ps(P[t] + 576);
            UNROLL for (int r = 0; r < R; r++) {
                __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(s[r][t], corr));
                acc[r][t] = _mm512_mask3_fmadd_ps(f, _mm512_mul_ps(dw[r], xd), acc[r][t], m);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) y[t * ys + r] = reduce16(acc[r][t]);
}

/* Q4_0 batched tile (lyra_matmul with more than one token): the same exact
 * block sums and the same FMA per block as q4_tile, without its per-token
 * transpose-add. The activations come in the "step" layout (Q4G bytes a
 * group of 16 blocks):
 *   [64k, 64k+64) for step k < 8: lane 4i+j (canonical lane of block 4j+i)
 *                 holds elements 4k..4k+3 of that block
 *   [512, 576) corr, [576, 640) xd: as in q4_tile's layout.
 * The weights are transposed to match once per row and group (4 quads, an
 * in-lane 4x4 dword transpose: dword k of every block in lane 4i+j; the low
 * nibbles are step k, the high ones step k+4), so each (row, token) needs
 * only 8 vpdpbusd into one int32 register, started at corr, per group: every
 * lane ends at its block's exact sum, and the reduction is shared by all
 * tokens of the tile. */
static void q4s_pack_group(const uint8_t *a, int cnt, uint8_t *P) {
    memset(P, 0, Q4G);
    int32_t corr[16] = {0};
    float xd[16] = {0};
    for (int k = 0; k < cnt; k++) {
        const uint8_t *blk = a + 34 * k;
        int l = LYRA_Q4_LANE(k);
        for (int st = 0; st < 8; st++) memcpy(P + 64 * st + 4 * l, blk + 2 + 4 * st, 4);
        int s = 0;
        for (int e = 0; e < 32; e++) s += (int8_t)blk[2 + e];
        corr[l] = -8 * s;
        xd[l] = h2f(blk);
    }
    memcpy(P + 512, corr, 64);
    memcpy(P + 576, xd, 64);
}

/* One row's group of 16 blocks (cnt of them real) as q4s_tile's v[0..3]:
 * lane 4i+j of v[k] holds the 8 weights (as nibbles: low = step k, high =
 * step k + 4) of block 4j+i; the repacked layout (Q4W) stores the same. */
INLINE void q4_group_v(const uint8_t *p, int cnt, __m512i v[4]) {
    __m512i z[4];
    UNROLL for (int j = 0; j < 4; j++) {
        const int nblk = cnt - 4 * j >= 4 ? 4 : cnt - 4 * j;
        z[j] = nblk > 0 ? q4_quad(p + 72 * j, nblk) : _mm512_setzero_si512();
    }
    __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    v[0] = _mm512_unpacklo_epi64(t0, t2);
    v[1] = _mm512_unpackhi_epi64(t0, t2);
    v[2] = _mm512_unpacklo_epi64(t1, t3);
    v[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* Steps k and k + 4 of a group for R rows x T tokens: the rows' v[k]
 * unpacked into nibbles, against the tokens' activation steps (P[t], the
 * Q4G layout); int32 sums, exact in any order. */
INLINE void q4_steps(const int R, const int T, int k, const __m512i *vk, const uint8_t *const *P,
                     __m512i s[TRM][TTM]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i lo[TRM], hi[TRM];
    UNROLL for (int r = 0; r < R; r++) {
        lo[r] = _mm512_and_si512(vk[r], m4);
        hi[r] = _mm512_and_si512(_mm512_srli_epi16(vk[r], 4), m4);
    }
    UNROLL for (int t = 0; t < T; t++) {
        __m512i xl = _mm512_loadu_si512(P[t] + 64 * k), xh = _mm512_loadu_si512(P[t] + 64 * (k + 4));
        UNROLL for (int r = 0; r < R; r++) {
            s[r][t] = _mm512_dpbusd_epi32(s[r][t], lo[r], xl);
            s[r][t] = _mm512_dpbusd_epi32(s[r][t], hi[r], xh);
        }
    }
}

INLINE void q4s_tile(const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                     const uint8_t *a, size_t as, float *y, size_t ys) {
    const int64_t nb = n / 32;
    __m512 acc[TRM][TTM];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 16) {
        const int cnt = nb - b < 16 ? (int)(nb - b) : 16;
        const uint8_t *P[TTM];
        UNROLL for (int t = 0; t < T; t++) P[t] = a + t * as + (b / 16) * Q4G;
        __mmask16 m = 0;
        for (int l = 0; l < 16; l++) m |= (__mmask16)((4 * (l & 3) + (l >> 2) < cnt) << l);
        __m512i s[TRM][TTM], v[4][TRM];
        UNROLL for (int r = 0; r < R; r++) {
            __m512i g[4];
            q4_group_v(w + r * ws + b * 18, cnt, g);
            UNROLL for (int k = 0; k < 4; k++) v[k][r] = g[k];
        }
        UNROLL for (int t = 0; t < T; t++) {
            __m512i corr = _mm512_loadu_si512(P[t] + 512);
            UNROLL for (int r = 0; r < R; r++) s[r][t] = corr;
        }
        UNROLL for (int k = 0; k < 4; k++) q4_steps(R, T, k, v[k], P, s);
        __m512 dw[TRM];
        UNROLL for (int r = 0; r < R; r++) dw[r] = q4_wscales(w + r * ws + b * 18, m);
        UNROLL for (int t = 0; t < T; t++) {
            __m512 xd = _mm512_loadu_ps(P[t] + 576);
            UNROLL for (int r = 0; r < R; r++)
                acc[r][t] = _mm512_mask3_fmadd_ps(_mm512_cvtepi32_ps(s[r][t]), _mm512_mul_ps(dw[r], xd), acc[r][t], m);
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) y[t * ys + r] = reduce16(acc[r][t]);
}

/* Q4_0 weights repacked for q4w_tile (lyra_matmul packs a block of rows at a
 * time and runs every token tile over it): per row, per group of 16 blocks,
 * Q4W bytes: [64k, 64k+64) for k < 4 q4s_tile's v[k] (the 8 weights of
 * steps k and k + 4 of block 4j+i in lane 4i+j, as nibbles: low = step k,
 * high = step k + 4; unpacked in the tile, so the block the token tiles
 * re-read from L2 is half the size), then [256, 320) the blocks' f32
 * scales d_w in lane order (0 past the row's end). */
#define Q4W 320

/* Q8_0 weights repacked for q8w_tile: per row, per pair of blocks, Q8W
 * bytes: the 64 weights made unsigned (w + 128; an odd last block: zeros in
 * the second half), then the 16 f32 scales (f16(d) of the first block x8,
 * of the second x8, or 0). */
#define Q8W 128

/* The K-quant batched path (its section below); its tiles: KW_RP x 4. */
#ifndef KW_RP
#define KW_RP 4
#endif
/* Rows of the one-token K-quant tile (kd_tile: up to 4). */
#define K_RD 4
static int k_kind(lyra_type wt);
static size_t k_act_bytes(int kind, int64_t n);
static size_t k_wpack_bytes(int kind, int64_t n);
static void k_mm_act(int kind, int64_t ntok, const float *x, uint8_t *dst, int64_t n);
static void k_wpack(const int kind, int64_t n, const uint8_t *w, size_t ws, int nr, uint8_t *dst);
static int k_mm_tile(int kind, int raw, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *a,
                     size_t as, int nt, float *y, size_t ys);
static int mm_tile_kraw(lyra_type wt, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *a,
                        size_t as, int nt, float *y, size_t ys);

size_t lyra_mm_wpack_bytes_avx512(lyra_type wt, int64_t n, int64_t ntok) {
    /* K-quants: every batch (the raw tile would repack as much per tile) */
    if (k_kind(wt)) return ntok > 1 ? k_wpack_bytes(k_kind(wt), n) : 0;
    /* one token tile (up to 4 tokens): the tiles on W itself cost less */
    if (ntok <= 4) return 0;
    if (wt == LYRA_TYPE_Q4_0) return (size_t)((n / 32 + 15) / 16) * Q4W;
    if (wt == LYRA_TYPE_Q8_0) return (size_t)((n / 32 + 1) / 2) * Q8W;
    return 0;
}

static void q8_wpack(int64_t n, const uint8_t *w, size_t ws, int nr, uint8_t *dst) {
    const int64_t nb = n / 32;
    for (int r = 0; r < nr; r++) {
        const uint8_t *p = w + (size_t)r * ws;
        for (int64_t b = 0; b < nb; b += 2, dst += Q8W) {
            if (b + 1 < nb) {
                _mm512_storeu_si512(dst, w_pair(p + 34 * b, p + 34 * b + 34));
                _mm512_storeu_ps(dst + 64, pair_scale(p + 34 * b, p + 34 * b + 34));
            } else {
                _mm512_storeu_si512(dst, w_one(p + 34 * b));
                _mm512_storeu_ps(dst + 64, _mm512_maskz_mov_ps(0x00FF, _mm512_set1_ps(h2f(p + 34 * b))));
            }
        }
    }
}

void lyra_mm_wpack_avx512(lyra_type wt, int64_t n, const uint8_t *w, size_t ws, int nr, uint8_t *dst) {
    if (k_kind(wt)) {
        k_wpack(k_kind(wt), n, w, ws, nr, dst);
        return;
    }
    if (wt == LYRA_TYPE_Q8_0) {
        q8_wpack(n, w, ws, nr, dst);
        return;
    }
    const int64_t nb = n / 32;
    for (int r = 0; r < nr; r++) {
        for (int64_t b = 0; b < nb; b += 16, dst += Q4W) {
            const int cnt = nb - b < 16 ? (int)(nb - b) : 16;
            const uint8_t *p = w + (size_t)r * ws + b * 18;
            __mmask16 m = 0;
            for (int l = 0; l < 16; l++) m |= (__mmask16)((4 * (l & 3) + (l >> 2) < cnt) << l);
            __m512i v[4];
            q4_group_v(p, cnt, v);
            for (int k = 0; k < 4; k++) _mm512_storeu_si512(dst + 64 * k, v[k]);
            _mm512_storeu_ps(dst + 256, q4_wscales(p, m));
        }
    }
}

/* q4s_tile on repacked weights (w: rows of Q4W-byte groups, ws apart). */
INLINE void q4w_tile(const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                     const uint8_t *a, size_t as, float *y, size_t ys) {
    const int64_t nb = n / 32;
    __m512 acc[TRM][TTM];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 16) {
        const int cnt = nb - b < 16 ? (int)(nb - b) : 16;
        const uint8_t *P[TTM], *Wg[TRM];
        UNROLL for (int t = 0; t < T; t++) P[t] = a + t * as + (b / 16) * Q4G;
        UNROLL for (int r = 0; r < R; r++) Wg[r] = w + r * ws + (b / 16) * Q4W;
        __mmask16 m = 0;
        for (int l = 0; l < 16; l++) m |= (__mmask16)((4 * (l & 3) + (l >> 2) < cnt) << l);
        __m512i s[TRM][TTM];
        UNROLL for (int t = 0; t < T; t++) {
            __m512i corr = _mm512_loadu_si512(P[t] + 512);
            UNROLL for (int r = 0; r < R; r++) s[r][t] = corr;
        }
        UNROLL for (int k = 0; k < 4; k++) {
            __m512i vk[TRM];
            UNROLL for (int r = 0; r < R; r++) vk[r] = _mm512_loadu_si512(Wg[r] + 64 * k);
            q4_steps(R, T, k, vk, P, s);
        }
        UNROLL for (int t = 0; t < T; t++) {
            __m512 xd = _mm512_loadu_ps(P[t] + 576);
            UNROLL for (int r = 0; r < R; r++)
                acc[r][t] = _mm512_mask3_fmadd_ps(_mm512_cvtepi32_ps(s[r][t]),
                                                  _mm512_mul_ps(_mm512_loadu_ps(Wg[r] + 256), xd), acc[r][t], m);
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) y[t * ys + r] = reduce16(acc[r][t]);
}

/* q8p_tile on repacked weights (w: rows of Q8W-byte pairs, ws apart),
 * activations in the P8 layout below: the same products and FMAs. */
INLINE void q8w_tile(const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                     const uint8_t *a, size_t as, float *y, size_t ys) {
    const int64_t nb = n / 32, np = (nb + 1) / 2;
    __m512 acc[TRM][TTM];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t pp = 0; pp < np; pp++) {
        /* odd block count: the last block goes to lanes 0..7 */
        const __mmask16 m = 2 * pp + 1 < nb ? 0xFFFF : 0x00FF;
        __m512i wq[TRM];
        __m512 wd[TRM];
        UNROLL for (int r = 0; r < R; r++) {
            wq[r] = _mm512_loadu_si512(w + r * ws + pp * Q8W);
            wd[r] = _mm512_loadu_ps(w + r * ws + pp * Q8W + 64);
        }
        UNROLL for (int t = 0; t < T; t++) {
            const uint8_t *P = a + t * as + pp * 192;
            __m512i xq = _mm512_loadu_si512(P), corr = _mm512_loadu_si512(P + 64);
            __m512 xs = _mm512_loadu_ps(P + 128);
            UNROLL for (int r = 0; r < R; r++) {
                __m512i pr = _mm512_dpbusd_epi32(corr, wq[r], xq);
                acc[r][t] = _mm512_mask3_fmadd_ps(_mm512_cvtepi32_ps(pr), _mm512_mul_ps(wd[r], xs), acc[r][t], m);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) y[t * ys + r] = reduce16(acc[r][t]);
}

/* ---------------------------------- packed activations for lyra_matmul
 * lyra_matmul's private activation layouts (lyra_mm_act_avx512), computed
 * once per token so that tiles need no activation-side work:
 * Q8_0 weights: per pair of blocks 192 bytes: qs[64] int8 | corr[16] int32
 * (-128 times the sum of each 4 x) | scale[16] f32 (f16(d) of the first
 * block x8, second x8); an odd last block has zeros in its second half.
 * Q4_0 weights: groups of 16 blocks of Q4G bytes (see q4_tile).
 * Same values as the standard Q8_0 activations, so the same bits come out.
 * Q8_0 weight scales come 16 blocks at a time by a gather. */
#define P8_PAIR 192

size_t lyra_mm_act_bytes_avx512(lyra_type wt, int64_t n) {
    if (wt == LYRA_TYPE_Q8_0) return (size_t)((n / 32 + 1) / 2) * P8_PAIR;
    if (wt == LYRA_TYPE_Q4_0) return (size_t)((n / 32 + 15) / 16) * Q4G;
    if (k_kind(wt)) return k_act_bytes(k_kind(wt), n);
    return 0;
}

/* One block as in act_q8_0; returns its f16-rounded scale, stores 32 int8. */
INLINE float q8_block(const float *x, uint8_t *q) {
    __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(absps(x0), absps(x1)));
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    __m512 vid = _mm512_set1_ps(id);
    _mm_storeu_si128((__m128i *)(void *)q, _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(x0, vid))));
    _mm_storeu_si128((__m128i *)(void *)(q + 16), _mm512_cvtepi32_epi8(round_away(_mm512_mul_ps(x1, vid))));
    return lyra_fp16_to_f32(lyra_f32_to_fp16(d));
}

void lyra_mm_act_avx512(lyra_type wt, int64_t ntok, const float *x, void *dst, int64_t n) {
    const int64_t nb = n / 32;
    uint8_t *P = dst;
    if (k_kind(wt)) {
        k_mm_act(k_kind(wt), ntok, x, P, n);
        return;
    }
    if (wt == LYRA_TYPE_Q4_0) { /* standard blocks of a group, then the group layout */
        uint8_t blk[16 * 34];
        for (int64_t b = 0; b < nb; b += 16, P += Q4G) {
            int cnt = nb - b < 16 ? (int)(nb - b) : 16;
            act_q8_0(x + 32 * b, blk, 32 * cnt);
            (ntok > 1 ? q4s_pack_group : q4_pack_group)(blk, cnt, P);
        }
        return;
    }
    for (int64_t b = 0; b < nb; b += 2, P += P8_PAIR) {
        float d0 = q8_block(x + 32 * b, P), d1 = 0.0f;
        if (b + 1 < nb) d1 = q8_block(x + 32 * b + 32, P + 32);
        else memset(P + 32, 0, 32);
        __m512i s4 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), _mm512_loadu_si512(P));
        _mm512_storeu_si512(P + 64, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s4, 7)));
        _mm512_storeu_ps(P + 128, _mm512_insertf32x8(_mm512_set1_ps(d0), _mm256_set1_ps(d1), 1));
    }
}

/* f32 scales of up to 16 consecutive blocks (mask m) of wb bytes from p. */
INLINE __m512 w_scales16(const uint8_t *p, __m512i vindex, __mmask16 m) {
    __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, vindex, p, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
}

INLINE void q8p_tile(const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                     const uint8_t *a, size_t as, float *y, size_t ys) {
    const int wb = 34;
    const int64_t nb = n / 32;
    const __m512i vindex = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                              _mm512_set1_epi32(wb));
    const __m512i idx0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512 acc[TRM][TTM];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b += 16) {
        int cnt = nb - b < 16 ? (int)(nb - b) : 16;
        __mmask16 m = (__mmask16)(cnt == 16 ? 0xFFFFu : (1u << cnt) - 1);
        __m512 dv[TRM];
        UNROLL for (int r = 0; r < R; r++) dv[r] = w_scales16(w + r * ws + b * wb, vindex, m);
        __m512i idx = idx0;
        for (int p = 0; p < cnt / 2; p++) {
            const int64_t bb = b + 2 * p;
            __m512i wq[TRM];
            __m512 wd[TRM];
            UNROLL for (int r = 0; r < R; r++) {
                const uint8_t *p0 = w + r * ws + bb * wb;
                if (T == 1) lyra_prefetch_ahead(p0, R * ws);
                wq[r] = w_pair(p0, p0 + wb);
                wd[r] = _mm512_permutexvar_ps(idx, dv[r]);
            }
            UNROLL for (int t = 0; t < T; t++) {
                const uint8_t *P = a + t * as + (bb / 2) * P8_PAIR;
                __m512i xq = _mm512_loadu_si512(P), corr = _mm512_loadu_si512(P + 64);
                __m512 xs = _mm512_loadu_ps(P + 128);
                UNROLL for (int r = 0; r < R; r++) {
                    __m512i pr = _mm512_dpbusd_epi32(corr, wq[r], xq);
                    acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pr), _mm512_mul_ps(wd[r], xs), acc[r][t]);
                }
            }
            idx = _mm512_add_epi32(idx, _mm512_set1_epi32(2));
        }
        if (cnt & 1) { /* odd block count: the last block goes to lanes 0..7 */
            const int64_t bb = b + cnt - 1;
            __m512i wq[TRM];
            __m512 wd[TRM];
            UNROLL for (int r = 0; r < R; r++) {
                wq[r] = w_one(w + r * ws + bb * wb);
                wd[r] = _mm512_permutexvar_ps(idx, dv[r]);
            }
            UNROLL for (int t = 0; t < T; t++) {
                const uint8_t *P = a + t * as + (bb / 2) * P8_PAIR;
                __m512i xq = _mm512_loadu_si512(P), corr = _mm512_loadu_si512(P + 64);
                __m512 xs = _mm512_loadu_ps(P + 128);
                UNROLL for (int r = 0; r < R; r++) {
                    __m512i pr = _mm512_dpbusd_epi32(corr, wq[r], xq);
                    acc[r][t] = _mm512_mask3_fmadd_ps(_mm512_cvtepi32_ps(pr), _mm512_mul_ps(wd[r], xs), acc[r][t],
                                                      0x00FF);
                }
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) y[t * ys + r] = reduce16(acc[r][t]);
}


/* Tile shapes: Q8_0 prompt P8_RP x P8_TP, decode P8_RD x 1; Q4_0 decode
 * P4_RD x 1 on the group layout (q4_tile); Q4_0 prompt P4_RP x P4_TP only
 * for standard activations (lyra_tile_avx512). */
#ifndef P8_RP
#define P8_RP 4
#endif
#ifndef P8_TP
#define P8_TP 4
#endif
#define P8_RD 4
#ifndef P4_RP
#define P4_RP 4
#endif
#ifndef P4_TP
#define P4_TP 2
#endif
#define P4_RD 4
/* Q4_0 batched (q4s_tile): P4S_RP x P4S_TP, a lone token P4S_RP x 1. */
#ifndef P4S_RP
#define P4S_RP 4
#endif
#define P4S_TP 4
#define K_P8(R_, T_, W_, A_, Y_) q8p_tile(R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_P4S(R_, T_, W_, A_, Y_) q4s_tile(R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_P4(R_, T_, W_, A_, Y_) q4_tile(1, R_, T_, n, W_, ws, A_, as, Y_, ys)

static __attribute__((noinline)) void cover_p8(int64_t n, const uint8_t *w, size_t ws, int nr,
                                                const uint8_t *a, size_t as, int nt, float *y, size_t ys) {
    LYRA_TILE_COVER(K_P8, P8_RP, P8_TP, P8_RD);
}

static __attribute__((noinline)) void cover_p4(int64_t n, const uint8_t *w, size_t ws, int nr,
                                                const uint8_t *a, size_t as, int nt, float *y, size_t ys) {
    LYRA_TILE_COVER(K_P4, P4_RP, P4_TP, P4_RD);
}

/* Rows of one token tile of T_ tokens: RP_ at a time, then singles. */
#define TAIL_ROWS(KERN, RP_, T_)                                                       \
    do {                                                                              \
        int r = 0;                                                                    \
        for (; r + RP_ <= nr; r += RP_) KERN(RP_, T_, w + r * ws, at, yt + r);         \
        for (; r < nr; r++) KERN(1, T_, w + r * ws, at, yt + r);                       \
    } while (0)

/* Token tiles of 4, the last one of the 1..3 left (the weight work of a
 * tile is shared by its tokens, so 2 or 3 tokens go together). */
#define TAIL_COVER(KERN, RP_)                                                          \
    do {                                                                              \
        for (int t = 0; t < nt;) {                                                    \
            int tt = nt - t >= 4 ? 4 : nt - t;                                        \
            const uint8_t *at = a + t * as;                                           \
            float *yt = y + t * ys;                                                   \
            switch (tt) {                                                             \
            case 4: TAIL_ROWS(KERN, RP_, 4); break;                                   \
            case 3: TAIL_ROWS(KERN, RP_, 3); break;                                   \
            case 2: TAIL_ROWS(KERN, RP_, 2); break;                                   \
            default: TAIL_ROWS(KERN, RP_, 1); break;                                  \
            }                                                                         \
            t += tt;                                                                  \
        }                                                                             \
    } while (0)

_Static_assert(P4S_TP == 4 && P4S_RP <= TRM, "q4s_tile: RP x 4 tokens");
static __attribute__((noinline)) void cover_p4s(int64_t n, const uint8_t *w, size_t ws, int nr,
                                                 const uint8_t *a, size_t as, int nt, float *y, size_t ys) {
    TAIL_COVER(K_P4S, P4S_RP);
}

#ifndef P4W_RP
#define P4W_RP 4
#endif
#define P4W_TP 4
#define K_P4W(R_, T_, W_, A_, Y_) q4w_tile(R_, T_, n, W_, ws, A_, as, Y_, ys)

_Static_assert(P4W_RP <= TRM, "q4w_tile: RP x 4 tokens");
static __attribute__((noinline)) void cover_p4w(int64_t n, const uint8_t *w, size_t ws, int nr,
                                                 const uint8_t *a, size_t as, int nt, float *y, size_t ys) {
    TAIL_COVER(K_P4W, P4W_RP);
}

#ifndef P8W_RP
#define P8W_RP 4
#endif
#define K_P8W(R_, T_, W_, A_, Y_) q8w_tile(R_, T_, n, W_, ws, A_, as, Y_, ys)

_Static_assert(P8W_RP <= TRM, "q8w_tile: RP x 4 tokens");
static __attribute__((noinline)) void cover_p8w(int64_t n, const uint8_t *w, size_t ws, int nr,
                                                 const uint8_t *a, size_t as, int nt, float *y, size_t ys) {
    TAIL_COVER(K_P8W, P8W_RP);
}

int lyra_mm_wtile_avx512(lyra_type wt, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *a,
                         size_t as, int nt, float *y, size_t ys) {
    if (k_kind(wt)) return k_mm_tile(k_kind(wt), 0, n, w, ws, nr, a, as, nt, y, ys);
    if (nr > 0 && nt > 0) (wt == LYRA_TYPE_Q8_0 ? cover_p8w : cover_p4w)(n, w, ws, nr, a, as, nt, y, ys);
    return 1;
}

void lyra_mm_wshape_avx512(lyra_type wt, int64_t ntok, int *R, int *T) {
    (void)ntok;
    *R = k_kind(wt) ? KW_RP : wt == LYRA_TYPE_Q8_0 ? P8W_RP : P4W_RP;
    *T = 4;
}

static int mm_tile_p8(lyra_type wt, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *a,
                      size_t as, int nt, float *y, size_t ys) {
    (void)wt;
    if (nr > 0 && nt > 0) cover_p8(n, w, ws, nr, a, as, nt, y, ys);
    return 1;
}

static int mm_tile_p4(lyra_type wt, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *a,
                      size_t as, int nt, float *y, size_t ys) {
    (void)wt;
    if (nr > 0 && nt > 0) cover_p4(n, w, ws, nr, a, as, nt, y, ys);
    return 1;
}

static int mm_tile_p4s(lyra_type wt, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *a,
                       size_t as, int nt, float *y, size_t ys) {
    (void)wt;
    if (nr > 0 && nt > 0) cover_p4s(n, w, ws, nr, a, as, nt, y, ys);
    return 1;
}

lyra_tile_fn lyra_mm_tile_avx512(lyra_type wt, int64_t ntok) {
    if (k_kind(wt)) return ntok > 1 ? mm_tile_kraw : lyra_tile_avx512;
    if (wt == LYRA_TYPE_Q8_0) return mm_tile_p8;
    if (wt == LYRA_TYPE_Q4_0) return ntok > 1 ? mm_tile_p4s : mm_tile_p4;
    return NULL;
}

void lyra_mm_shape_avx512(lyra_type wt, int64_t ntok, int *R, int *T) {
    if (k_kind(wt)) {
        *R = ntok <= 1 ? K_RD : KW_RP;
        *T = ntok <= 1 ? 1 : 4;
        return;
    }
    if (wt == LYRA_TYPE_Q4_0) {
        *R = ntok <= 1 ? P4_RD : P4S_RP;
        *T = ntok <= 1 ? 1 : P4S_TP;
        return;
    }
    *R = ntok <= 1 ? P8_RD : P8_RP;
    *T = ntok <= 1 ? 1 : P8_TP;
}

/* ------------------------------------------------ K-quants
 * Canonical order (kernels_impl.h): one exact int32 sum per sub-block (32
 * elements for Q4_K/Q5_K, 16 for Q6_K), one FMA per sub-block into its lane;
 * Q4_K/Q5_K share the 16 lanes between two super-blocks and take the mins by
 * a second FMA per sub-block.
 * Decode (kd_tile: standard Q8_K activations, raw weights): vpdpbusd of the
 * unpacked quants against the matching activations leaves sums of 4, and a
 * 4x4 transpose-add (tadd32/tadd64) folds them into sub-block sums, in the
 * lanes LYRA_K4_LANE / LYRA_K6_LANE name (that is why those maps look as
 * they do); the scales are permuted into the same lanes.
 * Batches (kw_tile): weights repacked per row block (lyra_mm_wpack_avx512)
 * and activations laid out per token (lyra_mm_act_avx512) so that lane l of
 * step k holds elements 4k..4k+3 of lane l's sub-block: 8 (Q4_K/Q5_K, a pair
 * of super-blocks) or 4 (Q6_K) vpdpbusd leave every sub-block's sum in its
 * lane, then one convert and one or two FMAs per (row, token). */

/* The index (8h + j) of the sub-block in canonical lane l of a Q4_K/Q5_K
 * super-block pair (h: first or second), and (j) of a Q6_K super-block. */
static const int32_t K4_PERM[16] __attribute__((aligned(64))) = {0, 1, 4, 5, 8, 9, 12, 13,
                                                                 2, 3, 6, 7, 10, 11, 14, 15};
static const int32_t K6_PERM[16] __attribute__((aligned(64))) = {0, 4, 8, 12, 1, 5, 9, 13,
                                                                 2, 6, 10, 14, 3, 7, 11, 15};
/* f32 lanes of [d0, dmin0, d1, dmin1]: d of lane l's super-block, and dmin. */
static const int32_t K4_DIDX[2][16] __attribute__((aligned(64))) = {
    {0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2}, {1, 1, 1, 1, 3, 3, 3, 3, 1, 1, 1, 1, 3, 3, 3, 3}};

INLINE int16_t rdi16(const uint8_t *p) { int16_t v; memcpy(&v, p, 2); return v; }

/* 64 unsigned weights of group g (elements 64g..64g+63) of a K-quant block. */
INLINE __m512i k_quants(int kind, const uint8_t *blk, int g) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    if (kind == 4 || kind == 5) {
        const uint8_t *qs = blk + (kind == 4 ? 16 : 48) + 32 * g;
        __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)qs));
        v = _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFFFF0000u, v, 4), m4);
        if (kind == 4) return v;
        __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 16)));
        __m512i sh = _mm512_mask_set1_epi16(_mm512_set1_epi16((short)(2 * g)), 0xFFFF0000u, (short)(2 * g + 1));
        __m512i th = _mm512_slli_epi16(_mm512_srlv_epi16(hb, sh), 4);
        return _mm512_ternarylogic_epi32(v, th, _mm512_set1_epi8(0x10), 0xF8); /* v | (th & 0x10) */
    }
    int h = g >> 1, odd = g & 1;
    __m512i ql = _mm512_loadu_si512(blk + 64 * h);
    if (odd) ql = _mm512_srli_epi16(ql, 4);
    ql = _mm512_and_si512(ql, m4);
    __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 128 + 32 * h)));
    __m512i sh = _mm512_mask_set1_epi16(_mm512_set1_epi16((short)(4 * odd)), 0xFFFF0000u, (short)(4 * odd + 2));
    __m512i th = _mm512_slli_epi16(_mm512_srlv_epi16(hb, sh), 4);
    return _mm512_ternarylogic_epi32(ql, th, _mm512_set1_epi8(0x30), 0xF8); /* ql | (th & 0x30) */
}

/* 64-byte vector: the low 32 bytes all a, the high 32 bytes all b. */
INLINE __m512i kd_halves8(int a, int b) {
    return _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi8((char)a), _mm512_set1_epi8((char)b));
}
INLINE __m512i kd_halves32(int a, int b) {
    return _mm512_mask_blend_epi64(0xF0, _mm512_set1_epi32(a), _mm512_set1_epi32(b));
}
/* Q4_K/Q5_K 12-byte scales at s -> bytes 0..7: the 8 six-bit scales,
 * 8..15: the 8 mins (dwords [u0,u2,u1,u2] masked / shifted for the low
 * bits, [u0,u0,u1,u1] >> 2 for the top two). */
INLINE __m128i kd_scales(const uint8_t *s) {
    __m128i u = _mm_loadu_si128((const __m128i *)(const void *)s); /* dword 3: not used */
    __m128i lo = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(u, 0x98), _mm_setr_epi32(0, 0, 0, 4)),
                               _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    __m128i hi = _mm_srli_epi32(_mm_shuffle_epi32(u, 0x50), 2);
    return _mm_ternarylogic_epi32(lo, hi, _mm_setr_epi32(0, 0x30303030, 0, 0x30303030), 0xF8);
}

/* [p[0..31], p[64..95]] */
INLINE __m512i kd_x2(const uint8_t *p) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)p)),
                              _mm256_loadu_si256((const __m256i *)(const void *)(p + 64)), 1);
}

/* Q4_K/Q5_K pair (b0, and b1 or NULL past the row's end): f32 sc_j * d and
 * min_j * dmin in canonical lanes (exact products; 0 for an absent b1). */
INLINE void k45_wscales(const uint8_t *b0, const uint8_t *b1, __m512 *W, __m512 *M) {
    __m128i s0 = kd_scales(b0 + 4), s1 = b1 ? kd_scales(b1 + 4) : _mm_setzero_si128();
    uint32_t d0, d1 = 0;
    memcpy(&d0, b0, 4);
    if (b1) memcpy(&d1, b1, 4);
    const __m512i perm = _mm512_load_si512(K4_PERM);
    __m512 dd = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_setr_epi32((int)d0, (int)d1, 0, 0)));
    __m512i sc = _mm512_permutexvar_epi32(perm, _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(s0, s1)));
    __m512i mn = _mm512_permutexvar_epi32(perm, _mm512_cvtepu8_epi32(_mm_unpackhi_epi64(s0, s1)));
    *W = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), _mm512_permutexvar_ps(_mm512_load_si512(K4_DIDX[0]), dd));
    *M = _mm512_mul_ps(_mm512_cvtepi32_ps(mn), _mm512_permutexvar_ps(_mm512_load_si512(K4_DIDX[1]), dd));
}

/* Q6_K: f32 sc_j * d in canonical lanes. */
INLINE __m512 k6_wscales(const uint8_t *blk) {
    __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(blk + 192)));
    sc = _mm512_permutexvar_epi32(_mm512_load_si512(K6_PERM), sc);
    return _mm512_mul_ps(_mm512_cvtepi32_ps(sc), _mm512_set1_ps(h2f(blk + 208)));
}

/* One Q4_K/Q5_K super-block's 8 sub-block sums (4 int32 partials each):
 * 128-bit lane k of the result is [sb0, sb1, sb4, sb5] (k = 0: elements
 * 0..15 of each, k = 1: 16..31) or [sb2, sb3, sb6, sb7] (k = 2, 3). xv: the
 * activations lo01, hi01, lo23, hi23 (kd_x2). */
INLINE __m512i kd_sums45(const int kind, const uint8_t *blk, const __m512i *xv) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), z = _mm512_setzero_si512();
    const uint8_t *qs = blk + (kind == 4 ? 16 : 48);
    __m512i v01 = _mm512_loadu_si512(qs), v23 = _mm512_loadu_si512(qs + 64);
    __m512i q[4] = {_mm512_and_si512(v01, m4), _mm512_and_si512(_mm512_srli_epi16(v01, 4), m4),
                    _mm512_and_si512(v23, m4), _mm512_and_si512(_mm512_srli_epi16(v23, 4), m4)};
    if (kind == 5) { /* the fifth bit of sub-block j is bit j of qh */
        const __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 16)));
        const __m512i k16 = _mm512_set1_epi8(0x10);
        q[0] = _mm512_mask_add_epi8(q[0], _mm512_test_epi8_mask(hb, kd_halves8(1, 4)), q[0], k16);
        q[1] = _mm512_mask_add_epi8(q[1], _mm512_test_epi8_mask(hb, kd_halves8(2, 8)), q[1], k16);
        q[2] = _mm512_mask_add_epi8(q[2], _mm512_test_epi8_mask(hb, kd_halves8(16, 64)), q[2], k16);
        q[3] = _mm512_mask_add_epi8(q[3], _mm512_test_epi8_mask(hb, kd_halves8(32, 128)), q[3], k16);
    }
    __m512i p0 = _mm512_dpbusd_epi32(z, q[0], xv[0]), p1 = _mm512_dpbusd_epi32(z, q[1], xv[1]);
    __m512i p2 = _mm512_dpbusd_epi32(z, q[2], xv[2]), p3 = _mm512_dpbusd_epi32(z, q[3], xv[3]);
    return tadd64(tadd32(p0, p1), tadd32(p2, p3));
}

/* Two super-blocks' kd_sums45 -> the 16 sub-block sums in canonical lanes. */
INLINE __m512i kd_pair(__m512i v0, __m512i v1) {
    __m512i x = _mm512_mask_blend_epi32(0xF0F0, v0, v1), y = _mm512_mask_blend_epi32(0xF0F0, v1, v0);
    return _mm512_add_epi32(x, _mm512_shuffle_i32x4(y, y, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* One Q6_K super-block's 16 sub-block sums of q*x in canonical lanes. xv:
 * the activations 0..63, 64..127, 128..191, 192..255. */
INLINE __m512i kd_sums6(const uint8_t *blk, const __m512i *xv) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), z = _mm512_setzero_si512();
    __m512i p[4];
    UNROLL for (int h = 0; h < 2; h++) {
        __m512i ql = _mm512_loadu_si512(blk + 64 * h);
        __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 128 + 32 * h)));
        __m512i qe = _mm512_ternarylogic_epi32(_mm512_and_si512(ql, m4), _mm512_rolv_epi32(hb, kd_halves32(4, 2)),
                                               _mm512_set1_epi8(0x30), 0xF8);
        __m512i qo = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                               _mm512_rolv_epi32(hb, kd_halves32(0, 30)), _mm512_set1_epi8(0x30),
                                               0xF8);
        p[2 * h] = _mm512_dpbusd_epi32(z, qe, xv[2 * h]);
        p[2 * h + 1] = _mm512_dpbusd_epi32(z, qo, xv[2 * h + 1]);
    }
    return tadd64(tadd32(p[0], p[1]), tadd32(p[2], p[3]));
}

/* Decode (one token) K-quant tile, R rows on standard Q8_K activations: the
 * activation side of a super-block (pair) once, then each row's weights in
 * registers. */
INLINE void kd_tile(const int kind, const int R, int64_t n, const uint8_t *w, size_t ws, const uint8_t *a,
                    float *y) {
    const size_t wb = kind == 4 ? 144 : kind == 5 ? 176 : 210;
    const int64_t nsb = n / 256;
    const size_t ahead = (size_t)R * ws;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    if (kind == 6) {
        for (int64_t s = 0; s < nsb; s++) {
            const uint8_t *ab = a + s * 292;
            __m512i xv[4];
            UNROLL for (int g = 0; g < 4; g++) xv[g] = _mm512_loadu_si512(ab + 4 + 64 * g);
            __m512i bs = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(ab + 260)));
            bs = _mm512_permutexvar_epi32(_mm512_load_si512(K6_PERM), bs);
            const __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(bs, 5));
            const __m512 ad = _mm512_set1_ps(rdf(ab));
            UNROLL for (int r = 0; r < R; r++) {
                const uint8_t *blk = w + r * ws + s * wb;
                for (size_t off = 0; off < wb; off += 64) lyra_prefetch_ahead(blk + off, ahead);
                __m512i D = _mm512_add_epi32(kd_sums6(blk, xv), corr);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(D), _mm512_mul_ps(k6_wscales(blk), ad), acc[r]);
            }
        }
    } else {
        for (int64_t s = 0; s < nsb; s += 2) {
            const int two = s + 1 < nsb;
            const uint8_t *a0 = a + s * 292, *a1 = a0 + 292;
            __m512i xv0[4], xv1[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                                      _mm512_setzero_si512()};
            xv0[0] = kd_x2(a0 + 4), xv0[1] = kd_x2(a0 + 36), xv0[2] = kd_x2(a0 + 132), xv0[3] = kd_x2(a0 + 164);
            const __m512i one16 = _mm512_set1_epi16(1);
            __m512i B = _mm512_madd_epi16(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(a0 + 260))), one16);
            __m512 AD = _mm512_set1_ps(rdf(a0));
            if (two) {
                xv1[0] = kd_x2(a1 + 4), xv1[1] = kd_x2(a1 + 36), xv1[2] = kd_x2(a1 + 132), xv1[3] = kd_x2(a1 + 164);
                __m512i B1 = _mm512_madd_epi16(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)(a1 + 260))), one16);
                B = _mm512_inserti64x4(B, _mm512_castsi512_si256(B1), 1);
                AD = _mm512_mask_blend_ps(0xF0F0, AD, _mm512_set1_ps(rdf(a1)));
            } else {
                B = _mm512_inserti64x4(B, _mm256_setzero_si256(), 1);
                AD = _mm512_maskz_mov_ps(0x0F0F, AD);
            }
            const __m512 BA = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_permutexvar_epi32(_mm512_load_si512(K4_PERM), B)), AD);
            UNROLL for (int r = 0; r < R; r++) {
                const uint8_t *b0 = w + r * ws + s * wb, *b1 = two ? b0 + wb : NULL;
                for (size_t off = 0; off < (two ? 2 : 1) * wb; off += 64) lyra_prefetch_ahead(b0 + off, ahead);
                __m512i v0 = kd_sums45(kind, b0, xv0), v1 = two ? kd_sums45(kind, b1, xv1) : _mm512_setzero_si512();
                __m512 W, M;
                k45_wscales(b0, b1, &W, &M);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(kd_pair(v0, v1)), _mm512_mul_ps(W, AD), acc[r]);
                acc[r] = _mm512_fnmadd_ps(BA, M, acc[r]);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) y[r] = reduce16(acc[r]);
}

/* The batched layouts.
 * Activations, per token: Q4_K/Q5_K a pair of super-blocks in KG45 bytes:
 *   [64k, 64k+64) for step k < 8: lane l holds elements 4k..4k+3 of lane
 *                 l's sub-block (LYRA_K4_LANE)
 *   [512, 576) f32 a.d of lane l's super-block
 *   [576, 640) f32 (float)B * a.d (B: the sub-block's sum of x)
 * Q6_K a super-block in KG6 bytes: [64k, 64k+64) for k < 4 as above
 * (LYRA_K6_LANE), [256, 320) int32 -32 * bsum (the q - 32 offset), [320,
 * 384) f32 a.d x16. A missing second super-block: zeros.
 * Weights, per row: Q4_K a pair in KW4 bytes: [64k, 64k+64) for k < 4 the
 * weights of steps k (low nibbles) and k + 4 (high nibbles), [256, 320) f32
 * sc_j * d, [320, 384) f32 min_j * dmin; Q5_K in KW5 bytes: [64k, 64k+64)
 * for k < 8 step k as bytes, [512, 576) and [576, 640) the same scales; Q6_K
 * a super-block in KW6 bytes: 4 steps as bytes, [256, 320) f32 sc_j * d. */
#define KG45 640
#define KG6 384
#define KW4 384
#define KW5 640
#define KW6 320

static void k45_pack_act(const uint8_t *a0, const uint8_t *a1, uint8_t *P) {
    memset(P, 0, KG45);
    float AD[16] = {0}, BA[16] = {0};
    for (int h = 0; h < 2; h++) {
        const uint8_t *ab = h ? a1 : a0;
        if (!ab) continue;
        float ad = rdf(ab);
        for (int j = 0; j < 8; j++) {
            int l = LYRA_K4_LANE(h, j);
            for (int k = 0; k < 8; k++) memcpy(P + 64 * k + 4 * l, ab + 4 + 32 * j + 4 * k, 4);
            int B = rdi16(ab + 260 + 4 * j) + rdi16(ab + 262 + 4 * j);
            AD[l] = ad;
            BA[l] = (float)B * ad;
        }
    }
    memcpy(P + 512, AD, 64);
    memcpy(P + 576, BA, 64);
}

static void k6_pack_act(const uint8_t *ab, uint8_t *P) {
    int32_t corr[16];
    float AD[16];
    for (int j = 0; j < 16; j++) {
        int l = LYRA_K6_LANE(j);
        for (int k = 0; k < 4; k++) memcpy(P + 64 * k + 4 * l, ab + 4 + 16 * j + 4 * k, 4);
        corr[l] = -32 * rdi16(ab + 260 + 2 * j);
        AD[l] = rdf(ab);
    }
    memcpy(P + 256, corr, 64);
    memcpy(P + 320, AD, 64);
}

/* Byte offsets (in element order: 256 per super-block) of step 0 of lane
 * l's sub-block: a pair of Q4_K/Q5_K super-blocks, a Q6_K super-block. */
static const int32_t K4_STEP0[16] __attribute__((aligned(64))) = {0, 32, 128, 160, 256, 288, 384, 416,
                                                                  64, 96, 192, 224, 320, 352, 448, 480};
static const int32_t K6_STEP0[16] __attribute__((aligned(64))) = {0, 64, 128, 192, 16, 80, 144, 208,
                                                                  32, 96, 160, 224, 48, 112, 176, 240};

/* One row's Q4_K/Q5_K pair (b1 NULL past the row's end) -> KW4/KW5 bytes. */
INLINE void k45_wpack(const int kind, const uint8_t *b0, const uint8_t *b1, uint8_t *dst) {
    uint8_t q[512] __attribute__((aligned(64)));
    for (int g = 0; g < 4; g++) _mm512_store_si512(q + 64 * g, k_quants(kind, b0, g));
    for (int g = 0; g < 4; g++)
        _mm512_store_si512(q + 256 + 64 * g, b1 ? k_quants(kind, b1, g) : _mm512_setzero_si512());
    const __m512i base = _mm512_load_si512(K4_STEP0);
    __m512i st[8];
    for (int k = 0; k < 8; k++)
        st[k] = _mm512_i32gather_epi32(_mm512_add_epi32(base, _mm512_set1_epi32(4 * k)), q, 1);
    __m512 W, M;
    k45_wscales(b0, b1, &W, &M);
    if (kind == 4) {
        for (int k = 0; k < 4; k++) _mm512_storeu_si512(dst + 64 * k, _mm512_or_si512(st[k], _mm512_slli_epi16(st[k + 4], 4)));
        _mm512_storeu_ps(dst + 256, W);
        _mm512_storeu_ps(dst + 320, M);
    } else {
        for (int k = 0; k < 8; k++) _mm512_storeu_si512(dst + 64 * k, st[k]);
        _mm512_storeu_ps(dst + 512, W);
        _mm512_storeu_ps(dst + 576, M);
    }
}

/* One row's Q6_K super-block -> KW6 bytes. */
INLINE void k6_wpack(const uint8_t *blk, uint8_t *dst) {
    uint8_t q[256] __attribute__((aligned(64)));
    for (int g = 0; g < 4; g++) _mm512_store_si512(q + 64 * g, k_quants(6, blk, g));
    const __m512i base = _mm512_load_si512(K6_STEP0);
    for (int k = 0; k < 4; k++)
        _mm512_storeu_si512(dst + 64 * k, _mm512_i32gather_epi32(_mm512_add_epi32(base, _mm512_set1_epi32(4 * k)), q, 1));
    _mm512_storeu_ps(dst + 256, k6_wscales(blk));
}

static void k_wpack(const int kind, int64_t n, const uint8_t *w, size_t ws, int nr, uint8_t *dst) {
    const size_t wb = kind == 4 ? 144 : kind == 5 ? 176 : 210;
    const int64_t nsb = n / 256;
    for (int r = 0; r < nr; r++) {
        const uint8_t *p = w + (size_t)r * ws;
        if (kind == 6) {
            for (int64_t s = 0; s < nsb; s++, dst += KW6) k6_wpack(p + s * wb, dst);
            continue;
        }
        for (int64_t s = 0; s < nsb; s += 2, dst += kind == 4 ? KW4 : KW5)
            k45_wpack(kind, p + s * wb, s + 1 < nsb ? p + (s + 1) * wb : NULL, dst);
    }
}

/* Batched K-quant tile, R rows x T tokens, activations in the layouts above;
 * weights repacked (raw = 0: rows of KW bytes per pair / super-block, ws
 * apart) or raw (raw = 1: repacked here a pair at a time, the fallback when
 * lyra_matmul has no buffer for a row block). */
INLINE void kw_tile(const int kind, const int raw, const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                    const uint8_t *a, size_t as, float *y, size_t ys) {
    const int64_t nsb = n / 256;
    const size_t wb = kind == 4 ? 144 : kind == 5 ? 176 : 210;
    const size_t kw = kind == 4 ? KW4 : kind == 5 ? KW5 : KW6;
    uint8_t buf[raw ? TRM : 1][raw ? KW5 : 1] __attribute__((aligned(64)));
    __m512 acc[TRM][TTM];
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    const int64_t step = kind == 6 ? 1 : 2;
    for (int64_t s = 0, g = 0; s < nsb; s += step, g++) {
        const uint8_t *P[TTM], *Wg[TRM];
        UNROLL for (int t = 0; t < T; t++) P[t] = a + t * as + g * (kind == 6 ? KG6 : KG45);
        UNROLL for (int r = 0; r < R; r++) {
            if (raw) {
                const uint8_t *b0 = w + r * ws + s * wb;
                if (kind == 6) k6_wpack(b0, buf[r]);
                else k45_wpack(kind, b0, s + 1 < nsb ? b0 + wb : NULL, buf[r]);
                Wg[r] = buf[r];
            } else {
                Wg[r] = w + r * ws + g * kw;
            }
        }
        __m512i sum[TRM][TTM];
        if (kind == 6) {
            UNROLL for (int t = 0; t < T; t++) {
                __m512i corr = _mm512_loadu_si512(P[t] + 256);
                UNROLL for (int r = 0; r < R; r++) sum[r][t] = corr;
            }
        } else {
            UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) sum[r][t] = _mm512_setzero_si512();
        }
        if (kind == 4) {
            UNROLL for (int k = 0; k < 4; k++) {
                __m512i vk[TRM];
                UNROLL for (int r = 0; r < R; r++) vk[r] = _mm512_loadu_si512(Wg[r] + 64 * k);
                q4_steps(R, T, k, vk, P, sum);
            }
        } else {
            for (int k = 0; k < (kind == 5 ? 8 : 4); k++) {
                __m512i vk[TRM];
                UNROLL for (int r = 0; r < R; r++) vk[r] = _mm512_loadu_si512(Wg[r] + 64 * k);
                UNROLL for (int t = 0; t < T; t++) {
                    __m512i xk = _mm512_loadu_si512(P[t] + 64 * k);
                    UNROLL for (int r = 0; r < R; r++) sum[r][t] = _mm512_dpbusd_epi32(sum[r][t], vk[r], xk);
                }
            }
        }
        const size_t wo = kind == 4 ? 256 : kind == 5 ? 512 : 256, ao = kind == 6 ? 320 : 512;
        UNROLL for (int t = 0; t < T; t++) {
            __m512 AD = _mm512_loadu_ps(P[t] + ao);
            UNROLL for (int r = 0; r < R; r++)
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r][t]), _mm512_mul_ps(_mm512_loadu_ps(Wg[r] + wo), AD),
                                            acc[r][t]);
            if (kind != 6) {
                __m512 BA = _mm512_loadu_ps(P[t] + 576);
                UNROLL for (int r = 0; r < R; r++)
                    acc[r][t] = _mm512_fnmadd_ps(BA, _mm512_loadu_ps(Wg[r] + wo + 64), acc[r][t]);
            }
        }
    }
    UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) y[t * ys + r] = reduce16(acc[r][t]);
}

/* lyra_matmul's K-quant entry points (see the lyra_mm_* functions). */
static int k_kind(lyra_type wt) {
    return wt == LYRA_TYPE_Q4_K ? 4 : wt == LYRA_TYPE_Q5_K ? 5 : wt == LYRA_TYPE_Q6_K ? 6 : 0;
}

static size_t k_act_bytes(int kind, int64_t n) {
    return kind == 6 ? (size_t)(n / 256) * KG6 : (size_t)((n / 256 + 1) / 2) * KG45;
}

static size_t k_wpack_bytes(int kind, int64_t n) {
    return kind == 6 ? (size_t)(n / 256) * KW6 : (size_t)((n / 256 + 1) / 2) * (kind == 4 ? KW4 : KW5);
}

/* One token: standard Q8_K (for kd_tile); more: the batched layout. */
static void k_mm_act(int kind, int64_t ntok, const float *x, uint8_t *dst, int64_t n) {
    const int64_t nsb = n / 256;
    if (ntok <= 1) {
        act_q8_k(x, dst, n);
        return;
    }
    uint8_t blk[2 * 292];
    for (int64_t s = 0; s < nsb; s += kind == 6 ? 1 : 2) {
        if (kind == 6) {
            act_q8_k(x + 256 * s, blk, 256);
            k6_pack_act(blk, dst + s * KG6);
            continue;
        }
        const int two = s + 1 < nsb;
        act_q8_k(x + 256 * s, blk, two ? 512 : 256);
        k45_pack_act(blk, two ? blk + 292 : NULL, dst + (s / 2) * KG45);
    }
}

_Static_assert(KW_RP <= TRM, "kw_tile: RP x 4 tokens");
#define K_KW4(R_, T_, W_, A_, Y_) kw_tile(4, 0, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_KW5(R_, T_, W_, A_, Y_) kw_tile(5, 0, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_KW6(R_, T_, W_, A_, Y_) kw_tile(6, 0, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_KR4(R_, T_, W_, A_, Y_) kw_tile(4, 1, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_KR5(R_, T_, W_, A_, Y_) kw_tile(5, 1, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define K_KR6(R_, T_, W_, A_, Y_) kw_tile(6, 1, R_, T_, n, W_, ws, A_, as, Y_, ys)
#define DEF_KCOVER(NAME, KERN)                                                                          \
    static __attribute__((noinline)) void NAME(int64_t n, const uint8_t *w, size_t ws, int nr,         \
                                               const uint8_t *a, size_t as, int nt, float *y, size_t ys) { \
        TAIL_COVER(KERN, KW_RP);                                                                        \
    }
DEF_KCOVER(cover_kw4, K_KW4)
DEF_KCOVER(cover_kw5, K_KW5)
DEF_KCOVER(cover_kw6, K_KW6)
DEF_KCOVER(cover_kr4, K_KR4)
DEF_KCOVER(cover_kr5, K_KR5)
DEF_KCOVER(cover_kr6, K_KR6)

/* Repacked (raw = 0) or raw (raw = 1) weights, batched activations. */
static int k_mm_tile(int kind, int raw, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *a,
                     size_t as, int nt, float *y, size_t ys) {
    if (nr <= 0 || nt <= 0) return 1;
    if (kind == 4) (raw ? cover_kr4 : cover_kw4)(n, w, ws, nr, a, as, nt, y, ys);
    else if (kind == 5) (raw ? cover_kr5 : cover_kw5)(n, w, ws, nr, a, as, nt, y, ys);
    else (raw ? cover_kr6 : cover_kw6)(n, w, ws, nr, a, as, nt, y, ys);
    return 1;
}

static int mm_tile_kraw(lyra_type wt, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *a,
                        size_t as, int nt, float *y, size_t ys) {
    return k_mm_tile(k_kind(wt), 1, n, w, ws, nr, a, as, nt, y, ys);
}

/* ------------------------------------------------ float weights */

/* 16 weights of type wt at element i of row p, masked loads for m != 0xFFFF. */
INLINE __m512 f_load(lyra_type wt, const uint8_t *p, int64_t i, __mmask16 m) {
    if (m == 0xFFFF) { /* plain loads in the main loop */
        if (wt == LYRA_TYPE_F32) return _mm512_loadu_ps(p + 4 * i);
        __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(p + 2 * i));
        if (wt == LYRA_TYPE_F16) return _mm512_cvtph_ps(h);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    if (wt == LYRA_TYPE_F32) return _mm512_maskz_loadu_ps(m, p + 4 * i);
    __m256i h = _mm256_maskz_loadu_epi16(m, p + 2 * i);
    if (wt == LYRA_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Float tile, R <= 4 rows x T <= 2 tokens. The accumulators are named
 * variables (a0_RT: lanes 0..15, a1_RT: lanes 16..31) rather than arrays:
 * GCC keeps arrays of vectors in memory here, which halves the FMA rate. */
#define F_FOR_R(X, t) X(0, t) X(1, t) X(2, t) X(3, t)
#define F_FOR_RT(X) F_FOR_R(X, 0) F_FOR_R(X, 1)
#define F_DECL(r, t) __m512 a0_##r##t = _mm512_setzero_ps(), a1_##r##t = _mm512_setzero_ps();
#define F_LOADW(r, M0, M1)                                                        \
    __m512 w0_##r = r < R ? f_load(wt, w + r * ws, i, M0) : _mm512_setzero_ps(); \
    __m512 w1_##r = r < R ? f_load(wt, w + r * ws, i + 16, M1) : _mm512_setzero_ps();
#define F_LOADX(t, M0, M1)                                                                                   \
    __m512 x0_##t = t < T ? _mm512_maskz_loadu_ps(M0, (const float *)(const void *)(a + t * as) + i)       \
                          : _mm512_setzero_ps();                                                           \
    __m512 x1_##t = t < T ? _mm512_maskz_loadu_ps(M1, (const float *)(const void *)(a + t * as) + i + 16)  \
                          : _mm512_setzero_ps();
#define F_FMA(r, t)                                                    \
    if (r < R && t < T) {                                              \
        a0_##r##t = _mm512_mask3_fmadd_ps(w0_##r, x0_##t, a0_##r##t, m0); \
        a1_##r##t = _mm512_mask3_fmadd_ps(w1_##r, x1_##t, a1_##r##t, m1); \
    }
#define F_OUT(r, t) \
    if (r < R && t < T) y[t * ys + r] = reduce16(_mm512_add_ps(a0_##r##t, a1_##r##t));

INLINE void f_tile(const lyra_type wt, const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                   const uint8_t *a, size_t as, float *y, size_t ys) {
    F_FOR_RT(F_DECL)
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __mmask16 m0 = 0xFFFF, m1 = 0xFFFF; /* plain loads and FMAs */
        if (T == 1) {
            const size_t eb = wt == LYRA_TYPE_F32 ? 4 : 2;
            for (int r = 0; r < R; r++)
                for (size_t off = 0; off < 32 * eb; off += 64) lyra_prefetch_ahead(w + r * ws + i * eb + off, R * ws);
        }
        F_LOADW(0, m0, m1) F_LOADW(1, m0, m1) F_LOADW(2, m0, m1) F_LOADW(3, m0, m1)
        F_LOADX(0, m0, m1) F_LOADX(1, m0, m1)
        F_FOR_RT(F_FMA)
    }
    if (i < n) { /* tail: masked loads, only the lanes of real elements change */
        int64_t rem = n - i;
        const __mmask16 m0 = rem >= 16 ? 0xFFFF : (__mmask16)((1u << rem) - 1);
        const __mmask16 m1 = rem > 16 ? (__mmask16)((1u << (rem - 16)) - 1) : 0;
        F_LOADW(0, m0, m1) F_LOADW(1, m0, m1) F_LOADW(2, m0, m1) F_LOADW(3, m0, m1)
        F_LOADX(0, m0, m1) F_LOADX(1, m0, m1)
        F_FOR_RT(F_FMA)
    }
    F_FOR_RT(F_OUT)
}

/* Float prompt tile, R rows x T tokens (T > 2), R * T <= 24. Lanes 0..15 and
 * 16..31 of the canonical 32 are independent FMA chains, so they are done in
 * two passes over the row (elements 32k+16h .. 32k+16h+15 in pass h), each
 * with one accumulator per (row, token): R weight vectors converted once per
 * step serve T tokens. Pass 0's accumulators wait on the stack; the result is
 * reduce16(pass 0 + pass 1), as in f_tile. */
INLINE void fw_tile(const lyra_type wt, const int R, const int T, int64_t n, const uint8_t *w, size_t ws,
                    const uint8_t *a, size_t as, float *y, size_t ys) {
    __m512 keep[8][6]; /* fixed sizes: GCC keeps VLAs of vectors in memory */
    const int64_t n32 = n / 32 * 32, rem = n - n32;
    UNROLL for (int h = 0; h < 2; h++) {
        __m512 acc[8][6];
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
        for (int64_t i = 16 * h; i < n32; i += 32) {
            __m512 wv[8];
            UNROLL for (int r = 0; r < R; r++) wv[r] = f_load(wt, w + r * ws, i, 0xFFFF);
            UNROLL for (int t = 0; t < T; t++) {
                __m512 xv = _mm512_loadu_ps((const float *)(const void *)(a + t * as) + i);
                UNROLL for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
            }
        }
        const int64_t hr = rem - 16 * h; /* tail elements of this pass's lanes */
        if (hr > 0) {
            const __mmask16 m = hr >= 16 ? 0xFFFF : (__mmask16)((1u << hr) - 1);
            const int64_t i = n32 + 16 * h;
            __m512 wv[8];
            UNROLL for (int r = 0; r < R; r++) wv[r] = f_load(wt, w + r * ws, i, m);
            UNROLL for (int t = 0; t < T; t++) {
                __m512 xv = _mm512_maskz_loadu_ps(m, (const float *)(const void *)(a + t * as) + i);
                UNROLL for (int r = 0; r < R; r++) acc[r][t] = _mm512_mask3_fmadd_ps(wv[r], xv, acc[r][t], m);
            }
        }
        UNROLL for (int r = 0; r < R; r++) UNROLL for (int t = 0; t < T; t++) {
            if (h == 0) keep[r][t] = acc[r][t];
            else y[t * ys + r] = reduce16(_mm512_add_ps(keep[r][t], acc[r][t]));
        }
    }
}

/* ------------------------------------------------ dispatch */

/* Tile shapes: prompt (ntok > 1) RP x TP, decode RD x 1. */
#define Q8_RP 4
#define Q8_TP 4
#define Q8_RD 4
/* K-quants on standard Q8_K activations take one token at a time (kd_tile;
 * lyra_matmul gives batches their own layout and kw_tile). */
#define K_RP K_RD
#define K_TP 1
_Static_assert(K_RD <= 4, "kd_tile: up to 4 rows");
#ifndef F_RP
#define F_RP 6
#endif
#ifndef F_TP
#define F_TP 4
#endif
#define F_RD 4

_Static_assert(F_RP <= 8 && F_TP <= 6 && F_RD <= 4, "fw_tile: up to 8 x 6, f_tile 4 x 2");

void lyra_shape_avx512(lyra_type wt, int64_t ntok, int *R, int *T) {
    int k = wt == LYRA_TYPE_Q4_K || wt == LYRA_TYPE_Q5_K || wt == LYRA_TYPE_Q6_K;
    int q = wt == LYRA_TYPE_Q8_0;
    if (wt == LYRA_TYPE_Q4_0) {
        *R = ntok <= 1 ? P4_RD : P4_RP;
        *T = ntok <= 1 ? 1 : P4_TP;
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
#define K_K4(R_, T_, W_, A_, Y_) kd_tile(4, R_, n, W_, ws, A_, Y_)
#define K_K5(R_, T_, W_, A_, Y_) kd_tile(5, R_, n, W_, ws, A_, Y_)
#define K_K6(R_, T_, W_, A_, Y_) kd_tile(6, R_, n, W_, ws, A_, Y_)
#define K_FT(WT, R_, T_, W_, A_, Y_)                                 \
    do {                                                             \
        if (T_ > 2 || R_ > 4) fw_tile(WT, R_, T_, n, W_, ws, A_, as, Y_, ys); \
        else f_tile(WT, R_, T_, n, W_, ws, A_, as, Y_, ys);          \
    } while (0)
#define K_F32(R_, T_, W_, A_, Y_) K_FT(LYRA_TYPE_F32, R_, T_, W_, A_, Y_)
#define K_F16(R_, T_, W_, A_, Y_) K_FT(LYRA_TYPE_F16, R_, T_, W_, A_, Y_)
#define K_BF16(R_, T_, W_, A_, Y_) K_FT(LYRA_TYPE_BF16, R_, T_, W_, A_, Y_)

/* One function per weight type (keeps functions small for the compiler). */
#define DEF_COVER(NAME, KERN, RP, TP, RD)                                                           \
    static __attribute__((noinline)) void NAME(int64_t n, const uint8_t *w, size_t ws, int nr,     \
                                               const uint8_t *a, size_t as, int nt, float *y, size_t ys) { \
        LYRA_TILE_COVER(KERN, RP, TP, RD);                                                          \
    }
DEF_COVER(cover_q8, K_Q8, Q8_RP, Q8_TP, Q8_RD)
DEF_COVER(cover_q4, K_Q4, P4_RP, P4_TP, P4_RD)
DEF_COVER(cover_k4, K_K4, K_RP, K_TP, K_RD)
DEF_COVER(cover_k5, K_K5, K_RP, K_TP, K_RD)
DEF_COVER(cover_k6, K_K6, K_RP, K_TP, K_RD)
DEF_COVER(cover_f32, K_F32, F_RP, F_TP, F_RD)
DEF_COVER(cover_f16, K_F16, F_RP, F_TP, F_RD)
DEF_COVER(cover_bf16, K_BF16, F_RP, F_TP, F_RD)

int lyra_tile_avx512(lyra_type wt, int64_t n, const uint8_t *w, size_t ws, int nr, const uint8_t *a, size_t as,
       int nt, float *y, size_t ys) {
    void (*f)(int64_t, const uint8_t *, size_t, int, const uint8_t *, size_t, int, float *, size_t);
    switch (wt) {
    case LYRA_TYPE_Q8_0: f = cover_q8; break;
    case LYRA_TYPE_Q4_0: f = cover_q4; break;
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
