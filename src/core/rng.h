/* rng.h: lyra's own PRNG (xoshiro256** seeded by splitmix64). Same seed, same
 * numbers on every machine: mkmodel's byte-identical files and the sampler's
 * reproducible draws depend on it. */
#ifndef LYRA_RNG_H
#define LYRA_RNG_H

#include <stdint.h>

typedef struct lyra_rng { uint64_t s[4]; } lyra_rng;

static inline uint64_t lyra_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline void lyra_rng_seed(lyra_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = lyra_splitmix64(&seed);
}

static inline uint64_t lyra_rng_u64(lyra_rng *r) {
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, 1) with 24 bits (exact in float). */
static inline float lyra_rng_f32(lyra_rng *r) { return (float)(lyra_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }
/* Uniform in [0, 1) with 53 bits. */
static inline double lyra_rng_f64(lyra_rng *r) { return (double)(lyra_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }
/* Uniform integer in [0, n). */
static inline uint64_t lyra_rng_below(lyra_rng *r, uint64_t n) { return n ? lyra_rng_u64(r) % n : 0; }

#endif
