/* sampler.h: the sampler's state, for session files (the sampler itself
 * is lyra.h's lyra_sampler_*; sampler.c). */
#ifndef LYRA_GEN_SAMPLER_H
#define LYRA_GEN_SAMPLER_H

#include <stdint.h>

#include "lyra.h"

/* The PRNG state and the repetition window, oldest token first. */
typedef struct lyra_sampler_state {
    uint64_t rng[4];
    int32_t n_window;       /* tokens in window */
    const int32_t *window;  /* [n_window] (get: points into the sampler until it changes) */
} lyra_sampler_state;

/* The state of s (window copied into buf[cap], cap >= repeat_last_n). */
void lyra_sampler_state_get(const lyra_sampler *s, lyra_sampler_state *st, int32_t *buf, int32_t cap);
/* Set s's PRNG and window (only the newest repeat_last_n tokens are kept). */
void lyra_sampler_state_set(lyra_sampler *s, const lyra_sampler_state *st);
/* repeat_last_n of s (the window's capacity). */
int32_t lyra_sampler_window_cap(const lyra_sampler *s);

#endif
