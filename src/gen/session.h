/* session.h: session files (docs/sessions.md): a sequence's tokens, its KV
 * cache, the sampler's state and a conversation, in a versioned binary
 * format with checksums, written atomically (core/afile.h). lyra.h's
 * lyra_session_save/load and the pipeline's session calls are built on
 * these; so is `lyra chat --session` (through lyra_chat_session_save/load).
 *
 * Reading is in three steps so that nothing changes until a file is known
 * good: parse (structure, bounds and checksums, for any bytes: the fuzz
 * target's entry), check (the model, KV type and geometry against a
 * context), apply (the KV cache and the sampler). */
#ifndef LYRA_GEN_SESSION_H
#define LYRA_GEN_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "gen/chat_session.h"
#include "lyra.h"

#define LYRA_SESSION_VERSION 1

/* A parsed file: the header's fields and pointers into the bytes. */
typedef struct lyra_session_view {
    uint32_t version;
    uint64_t fingerprint;
    int32_t kv_type;          /* lyra_kv_type */
    int32_t n_ctx, kv_chunk, n_layer, n_vocab;
    int32_t pos, top, n_tokens;
    uint64_t chunk_bytes;
    const unsigned char *layer_table; /* [n_layer][4] i32: kv_dim, n_ring, n_chunks, 0 */
    const unsigned char *tokens;      /* [n_tokens] i32 */
    int has_sampler;
    uint64_t rng[4];
    int32_t n_window;
    const unsigned char *window;      /* [n_window] i32 */
    const unsigned char *app;         /* [app_bytes] the conversation (or nothing) */
    uint64_t app_bytes;
    const unsigned char *kv;          /* the layers' sections, in order */
} lyra_session_view;

/* Write a session of sequence 0 of c: tokens[n] (= what the cache holds),
 * smp's state (may be NULL) and app[app_len] (may be empty) to path
 * (atomically), or (path NULL) into *buf (malloc'd) and *len. */
int lyra_session_write(lyra_context *c, const int32_t *tokens, int32_t n, const lyra_sampler *smp,
                       const void *app, size_t app_len, const char *path, void **buf, size_t *len,
                       lyra_error *err);

/* The same for sequence seq of c (the file format does not name the
 * sequence: a session of one sequence restores into any other of a context
 * of the same geometry). */
int lyra_session_write_seq(lyra_context *c, int32_t seq, const int32_t *tokens, int32_t n, const lyra_sampler *smp,
                           const void *app, size_t app_len, const char *path, void **buf, size_t *len,
                           lyra_error *err);

/* Parse buf[len] (name: the file in messages). */
int lyra_session_parse(const void *buf, size_t len, const char *name, lyra_session_view *v, lyra_error *err);
/* The same; check_crc 0 skips the checksums (only the fuzz target does, to
 * reach the structure behind them). */
int lyra_session_parse_ex(const void *buf, size_t len, const char *name, int check_crc, lyra_session_view *v,
                          lyra_error *err);
/* Does v fit c (model, KV type, geometry, vocabulary)? */
int lyra_session_check(const lyra_context *c, const lyra_session_view *v, const char *name, lyra_error *err);
/* Restore the cache of sequence 0 (and smp's state when both have one).
 * On failure the sequence is empty. */
int lyra_session_apply(lyra_context *c, lyra_sampler *smp, const lyra_session_view *v, lyra_error *err);
/* The same into sequence seq of c (its other sequences are untouched). */
int lyra_session_apply_seq(lyra_context *c, int32_t seq, lyra_sampler *smp, const lyra_session_view *v,
                           lyra_error *err);
/* Token i of v. */
int32_t lyra_session_token(const lyra_session_view *v, int32_t i);

/* The model's fingerprint, as session files name it. */
uint64_t lyra_session_fingerprint(const lyra_model *m);

/* Map the file at path read-only (*map NULL for an empty file); unmap. */
int lyra_session_map(const char *path, void **map, size_t *len, lyra_error *err);
void lyra_session_unmap(void *map, size_t len);

/* A conversation: the system prompt (NULL: none) and turns. */
typedef struct lyra_session_conv {
    char *system;
    char **user;   /* [n_turns] */
    char **reply;  /* [n_turns] (NULL: not answered) */
    int n_turns;
} lyra_session_conv;

/* Encode (*out malloc'd) and decode a conversation (name: in messages). */
int lyra_session_conv_encode(const char *system, char *const *user, char *const *reply, int n_turns,
                             void **out, size_t *len, lyra_error *err);
int lyra_session_conv_decode(const void *buf, size_t len, const char *name, lyra_session_conv *cv,
                             lyra_error *err);
void lyra_session_conv_free(lyra_session_conv *cv);

/* A chat session's conversation (with its system prompt), KV tokens, cache
 * and sampler, to path (or, path NULL, into *buf and *len). */
int lyra_chat_session_save(lyra_chat_session *cs, const char *path, void **buf, size_t *len,
                           lyra_error *err);
/* Restore one from buf[len] (name: in messages): everything is checked
 * first; on success the turns and KV tokens are the file's and *system
 * (malloc'd, NULL: none) is its system prompt, for the caller to own and
 * point cs->system at. */
int lyra_chat_session_load(lyra_chat_session *cs, const void *buf, size_t len, const char *name,
                           char **system, lyra_error *err);

#endif
