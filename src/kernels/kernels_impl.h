/* kernels_impl.h: internals shared by the matmul kernels' files (not a
 * public interface): the per-path kernel entry points.
 *
 * Every dot product has ONE canonical float evaluation order, defined by the
 * scalar kernels in matmul.c and reproduced exactly by the SIMD paths, so
 * all paths, all thread counts and all tile shapes give bit-identical results:
 *   - Q8_0 weights x Q8_0 activations: for block b, lane l (0..7):
 *       p = sum of the 4 products of elements 4l..4l+3 (exact int),
 *       acc[(b&1)*8+l] = fmaf((float)p, f16(w.d)*f16(a.d), acc[...]).
 *   - Q4_0 weights x Q8_0 activations: for block b,
 *       S = sum of its 32 products (q-8)*x (exact int),
 *       acc[LYRA_Q4_LANE(b)] = fmaf((float)S, f16(w.d)*f16(a.d), acc[...])
 *     (one FMA per block: the AVX-512 tile reduces 16 blocks' int32 sums
 *     into one register in this lane order; f16*f16 is exact in f32).
 *   - Q5_0 weights x Q8_0 activations: as Q4_0 with the 5-bit q - 16.
 *   - Q4_K / Q5_K x Q8_K: for super-block b, sub-block j < 8 (32 elements):
 *       D = sum of its 32 products q*x (exact int; q unsigned, 4 or 5 bits),
 *       B = bsum[2j] + bsum[2j+1] (the sub-block's sum of x),
 *       l = LYRA_K4_LANE(b, j),
 *       acc[l] = fmaf((float)D, ((float)sc_j * f16(w.d)) * a.d, acc[l]),
 *       acc[l] = fmaf((float)B * a.d, -((float)min_j * f16(w.dmin)), acc[l])
 *     (sc_j * f16 and min_j * f16 are exact in f32).
 *   - Q6_K x Q8_K: for super-block b, sub-block j < 16 (16 elements):
 *       D = sum of its 16 products (q-32)*x (exact int),
 *       acc[LYRA_K6_LANE(j)] = fmaf((float)D, ((float)sc_j * f16(w.d)) * a.d, acc[...]).
 *     The lane maps are where the AVX-512 decode tile's transpose-adds leave
 *     each sub-block's sum; the batched tiles lay weights and activations
 *     out so that every lane sums its sub-block whole (4 bytes per vpdpbusd).
 *   - F32 / F16 / BF16 x F32: acc[i%32] = fmaf(w[i], x[i], acc[i%32]).
 *   The 16 (or 32) lanes are summed by halving: acc[l] += acc[l+half]. */
#ifndef LYRA_KERNELS_IMPL_H
#define LYRA_KERNELS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* Q4_0 canonical lane of block b: in each group of 16 blocks, block 4j+i
 * (j, i < 4) goes to lane 4i+j. */
#define LYRA_Q4_LANE(b) (4 * (int)((b) & 3) + (int)(((b) >> 2) & 3))

/* K-quant canonical lanes: Q4_K/Q5_K sub-block j of super-block b (two
 * super-blocks share the 16 lanes: sub-blocks 0,1,4,5 in lanes 0..3 and
 * 2,3,6,7 in 8..11 for even b, +4 for odd b); Q6_K sub-block j (16 of a
 * super-block) as LYRA_Q4_LANE. */
#define LYRA_K4_LANE(b, j) (4 * (int)((b) & 1) + 8 * (((j) >> 1) & 1) + ((j) & 1) + 2 * ((j) >> 2))
#define LYRA_K6_LANE(j) (4 * ((j) & 3) + ((j) >> 2))

/* A tile of dot products: y[t*ys + r] = dot(W row r, activation row t) for
 * r < nr, t < nt; rows of W are wstride bytes apart, activation rows astride
 * bytes apart (activations already converted to lyra_vec_dot_type(wt)).
 * nr <= R and nt <= T from the path's tile shape. Returns 0 (and computes
 * nothing) when the path has no kernel for wt: the caller then uses scalar,
 * which gives the same bits. */
typedef int (*lyra_tile_fn)(lyra_type wt, int64_t n, const uint8_t *w, size_t wstride, int nr,
                            const uint8_t *a, size_t astride, int nt, float *y, size_t ys);
/* Activation conversion; returns 0 when the path has no kernel for the type
 * (caller falls back to the reference, which gives the same bytes). */
typedef int (*lyra_act_fn)(lyra_type at, const float *x, void *dst, int64_t n);

/* Tile shape (rows R x tokens T) that a path uses for weight type wt. */
typedef void (*lyra_shape_fn)(lyra_type wt, int64_t ntok, int *R, int *T);

int lyra_tile_scalar(lyra_type wt, int64_t n, const uint8_t *w, size_t wstride, int nr,
                     const uint8_t *a, size_t astride, int nt, float *y, size_t ys);
#if LYRA_X86
int lyra_tile_avx2(lyra_type wt, int64_t n, const uint8_t *w, size_t wstride, int nr,
                   const uint8_t *a, size_t astride, int nt, float *y, size_t ys);
int lyra_act_avx2(lyra_type at, const float *x, void *dst, int64_t n);
void lyra_shape_avx2(lyra_type wt, int64_t ntok, int *R, int *T);
int lyra_tile_avx512(lyra_type wt, int64_t n, const uint8_t *w, size_t wstride, int nr,
                     const uint8_t *a, size_t astride, int nt, float *y, size_t ys);
int lyra_act_avx512(lyra_type at, const float *x, void *dst, int64_t n);
void lyra_shape_avx512(lyra_type wt, int64_t ntok, int *R, int *T);
/* lyra_matmul's private activation layout on AVX-512 (Q8_0, Q4_0 and K-quant
 * weights): bytes per row (0: none for wt; enough for every ntok's layout),
 * conversion, tile and tile shape, for a matmul of ntok tokens (Q4_0 and the
 * K-quants use another layout and tile when ntok > 1). */
size_t lyra_mm_act_bytes_avx512(lyra_type wt, int64_t n);
void lyra_mm_act_avx512(lyra_type wt, int64_t ntok, const float *x, void *dst, int64_t n);
lyra_tile_fn lyra_mm_tile_avx512(lyra_type wt, int64_t ntok);
void lyra_mm_shape_avx512(lyra_type wt, int64_t ntok, int *R, int *T);
/* Weights repacked per block of rows (Q8_0 and Q4_0 when ntok > 4, K-quants
 * when ntok > 1): bytes per row (0:
 * none), the packing of nr rows into dst, and the tile (and its shape) that
 * reads them with the activations of lyra_mm_act_avx512. */
size_t lyra_mm_wpack_bytes_avx512(lyra_type wt, int64_t n, int64_t ntok);
void lyra_mm_wpack_avx512(lyra_type wt, int64_t n, const uint8_t *w, size_t ws, int nr, uint8_t *dst);
int lyra_mm_wtile_avx512(lyra_type wt, int64_t n, const uint8_t *w, size_t wstride, int nr,
                         const uint8_t *a, size_t astride, int nt, float *y, size_t ys);
void lyra_mm_wshape_avx512(lyra_type wt, int64_t ntok, int *R, int *T);
#endif

/* Cover nr x nt with kernels (RP,TP), (RP,1), (1,TP), (1,1) or, for nt == 1,
 * (RD,1) and (1,1). KERN(R, T, w, a, y) must be a macro calling the tile. Used by the
 * SIMD files inside their lyra_tile_* (names n w ws nr a as nt y ys). */
#define LYRA_TILE_COVER(KERN, RP, TP, RD)                                                     \
    do {                                                                            \
        if (nt == 1) {                                                              \
            int r = 0;                                                              \
            for (; r + RD <= nr; r += RD) KERN(RD, 1, w + r * ws, a, y + r);         \
            for (; r < nr; r++) KERN(1, 1, w + r * ws, a, y + r);                    \
            break;                                                                  \
        }                                                                           \
        for (int t = 0; t < nt;) {                                                  \
            int tt = nt - t >= TP ? TP : 1;                                         \
            const uint8_t *at = a + t * as;                                         \
            float *yt = y + t * ys;                                                 \
            int r = 0;                                                              \
            if (tt == TP) {                                                         \
                for (; r + RP <= nr; r += RP) KERN(RP, TP, w + r * ws, at, yt + r); \
                for (; r < nr; r++) KERN(1, TP, w + r * ws, at, yt + r);             \
            } else {                                                                \
                for (; r + RP <= nr; r += RP) KERN(RP, 1, w + r * ws, at, yt + r);  \
                for (; r < nr; r++) KERN(1, 1, w + r * ws, at, yt + r);              \
            }                                                                       \
            t += tt;                                                                \
        }                                                                           \
    } while (0)

#endif
