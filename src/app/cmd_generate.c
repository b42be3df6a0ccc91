/* cmd_generate.c: `lyra generate`: prompt -> streamed continuation on stdout.
 *
 * Only the continuation is printed (no prompt echo), token by token through
 * the streaming detokenizer (never a split UTF-8 sequence), flushed after
 * each token, then one newline. It stops at an end-of-generation token (not
 * printed), after -n tokens, or when the context is full (a note on stderr,
 * exit 0). The seed (random unless --seed) goes to stderr; the same seed and
 * flags give the same text for any --threads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "gen/chat_session.h"
#include "gen/textstream.h"
#include "lyra.h"

const char cmd_generate_usage[] =
    "usage: lyra generate -m MODEL [-p PROMPT] [-n N] [--temp T] [--top-k K]\n"
    "                     [--top-p P] [--min-p P] [--repeat-penalty R]\n"
    "                     [--repeat-last-n N] [--seed S] [--greedy] [--stop S]\n"
    "                     [--threads N] [--ctx N] [--batch N] [--kv-type f16|f32]\n"
    "                     [--parse-special] [--ignore-eos] [--load-in-8bit |\n"
    "                     --load-in-4bit] [--model-config FILE | --no-config]\n"
    "                     [device flags]\n"
    "\n"
    "Print the continuation of PROMPT (not the prompt itself), streamed as it is\n"
    "generated, then a newline. Without -p generation starts from BOS alone (and\n"
    "a SentencePiece model's dummy space before the first word is not printed).\n"
    "\n"
    "  -m, --model MODEL      GGUF model file, a directory holding one, or\n"
    "                         org/name[:TAG] in the Hugging Face cache (required\n"
    "                         unless the config file has model_id)\n"
    "  -p, --prompt PROMPT    text to continue (default: none, BOS only)\n"
    "  -n, --n-predict N      tokens to generate (default 256; also\n"
    "                         --max-new-tokens); -1: until an end-of-generation\n"
    "                         token or the context is full\n"
    "                         (config: pipeline_kwargs.max_new_tokens)\n"
    "  --temp T               temperature, >= 0; 0 = greedy (default 0.8)\n"
    "  --greedy               always the most likely token (do_sample false)\n"
    "  --top-k K              keep the K most likely tokens, 0 = off (default 40)\n"
    "  --top-p P              nucleus: smallest set with probability >= P,\n"
    "                         0..1, 1 = off (default 0.95)\n"
    "  --min-p P              drop tokens below P * the top probability, 0..1,\n"
    "                         0 = off (default 0.05)\n"
    "  --repeat-penalty R     penalise the last --repeat-last-n tokens, > 0,\n"
    "                         1 = off (default 1.0)\n"
    "  --repeat-last-n N      window of the penalty (default 64)\n"
    "  --seed S               sampling seed, 0..2^64-1 (default: random, printed\n"
    "                         on stderr as `seed: S`)\n"
    "  --stop S               stop before the text S (not printed); repeatable\n"
    "  -t, --threads N        CPU threads (default: physical cores)\n"
    "  -c, --ctx N            context size (default: min(model's, 4096))\n"
    "  -b, --batch N          prompt tokens per forward pass (default 512)\n"
    "  --kv-type f16|f32      KV cache element type (default f16)\n"
    "  --parse-special        match special tokens (<s>, ...) written in the prompt\n"
    "  --ignore-eos           never sample end-of-generation tokens (their logits\n"
    "                         are set to -inf): run until -n or a full context\n"
    "  --load-in-8bit         store F32/F16/BF16 weights as Q8_0 on load\n"
    "  --load-in-4bit         store F32/F16/BF16 weights as 4-bit on load\n"
    "  --dtype D              Hugging Face folders: weights in memory as auto (as\n"
    "                         stored), float32, float16 or bfloat16 (docs/hf.md)\n"
    "  --revision REV         Hugging Face cache: the branch, tag or commit of\n"
    "                         org/name (default refs/main; config: revision)\n"
    "  -q, -v                 quieter / more verbose stderr\n"
    APP_CONFIG_USAGE
    APP_DEVFLAGS_USAGE
    "\n"
    "Every flag but -p, --repeat-last-n, --parse-special, --ignore-eos, --no-mmap,\n"
    "--mlock, --min-ctx and --kv-chunk has a config file key (docs/config.md);\n"
    "flags win over the file.\n"
    "Sampling order: repetition penalty, top-k, top-p, min-p, temperature, draw.\n"
    "Output stops without printing the end-of-generation token. Exit 0 also when\n"
    "the context fills up (a note on stderr).\n";

/* Everything generate's flags and config set. */
typedef struct gen_opts {
    char *model;               /* the model file (-m or model_id, resolved; malloc'd) */
    lyra_config *cfg;          /* the effective configuration (owns the strings below) */
    const char *const *stop;   /* [n_stop] stop strings (--stop, pipeline_kwargs.stop) */
    int n_stop;                /* their count */
    const char *prompt;        /* -p, NULL = BOS only */
    int64_t n_predict;         /* -n, -1 = unlimited */
    lyra_sampler_params sp;    /* sampling */
    int seed_given;            /* --seed was given */
    lyra_context_params cp;    /* context */
    lyra_model_params mp;      /* device flags */
    int parse_special;         /* --parse-special */
    int ignore_eos;            /* --ignore-eos */
} gen_opts;

/* Flags, then the config file under them (docs/config.md), then the model. */
static int parse_opts(int argc, char **argv, gen_opts *o, lyra_error *err) {
    memset(o, 0, sizeof *o);
    o->n_predict = -1;
    o->sp = lyra_sampler_default_params();
    o->cp = lyra_context_default_params();
    o->mp = lyra_model_default_params();
    const app_opt opts[] = {
        APP_STR("-p", "--prompt", &o->prompt),
        APP_I32("--repeat-last-n", NULL, &o->sp.repeat_last_n, 0, 1 << 20),
        APP_SWITCH("--parse-special", &o->parse_special),
        APP_SWITCH("--ignore-eos", &o->ignore_eos),
        APP_OPT_END_,
    };
    int rc = args_parse(argc, argv, NULL, opts, APP_CFG_ALL & ~APP_CFG_CHAT, &o->mp, &o->cfg, err);
    if (!rc) rc = app_config_model(o->cfg, &o->model, err);
    if (!rc) rc = app_config_apply(o->cfg, &o->mp, &o->cp, &o->sp, &o->seed_given, err);
    lyra_config_gen g;
    if (!rc) rc = lyra_config_apply_gen(o->cfg, &g, err);
    if (!rc) {
        o->n_predict = g.max_new_tokens;
        o->stop = g.stop;
        o->n_stop = g.n_stop;
    }
    return rc;
}

static void free_opts(gen_opts *o) {
    free(o->model);
    lyra_config_free(o->cfg);
    o->model = NULL;
    o->cfg = NULL;
}

/* Write n bytes to stdout and flush (streaming). */
static int emit(const char *buf, size_t n, lyra_error *err) {
    if (n && fwrite(buf, 1, n, stdout) != n)
        return lyra_err(err, LYRA_ERR_RUNTIME, "<stdout>", "write failed");
    if (fflush(stdout) != 0) return lyra_err(err, LYRA_ERR_RUNTIME, "<stdout>", "write failed");
    return LYRA_OK;
}

/* The output as decided (src/gen/textstream.h: bytes that could begin a
 * stop string are held back) to stdout; *failed (user) on a write error,
 * which cancels the stream. */
static int write_stdout(const char *s, size_t n, void *user) {
    if (emit(s, n, NULL)) {
        *(int *)user = 1;
        return 1;
    }
    return 0;
}

/* Tokens of the prompt (or BOS alone); *toks malloc'd. */
static int prompt_tokens(const lyra_model *m, const gen_opts *o, int32_t **toks, size_t *n,
                         lyra_error *err) {
    if (o->prompt) {
        int rc = lyra_tokenize(m, o->prompt, strlen(o->prompt), -1, o->parse_special, toks, n, err);
        if (rc) return rc;
        if (*n > 0) return LYRA_OK;
        free(*toks);
        *toks = NULL;
    }
    int32_t bos = lyra_token_bos(m);
    if (bos < 0)
        return lyra_err(err, LYRA_ERR_INPUT, "-p",
                        "the model has no BOS token: give a non-empty prompt");
    *toks = malloc(sizeof **toks);
    if (!*toks) return lyra_err(err, LYRA_ERR_OOM, "generate", "out of memory");
    (*toks)[0] = bos;
    *n = 1;
    return LYRA_OK;
}

/* The tokens after the prompt. lstrip: drop one leading space of the output
 * (text decoded from BOS alone, as SentencePiece decodes: the dummy prefix of
 * the first word is not text). eog: NULL, or (--ignore-eos) the ids
 * [n_eog] of the end-of-generation tokens, whose logits are set to -inf in
 * masked [n_vocab]. The output goes through ts (stop strings held back; its
 * callback sets *failed on a write error); ts->stopped says a stop string
 * ended the generation. */
static int generate_loop(lyra_model *m, lyra_context *ctx, lyra_sampler *s, lyra_detok *d,
                         const gen_opts *o, int lstrip, const int32_t *eog, int32_t n_eog,
                         float *masked, lyra_textstream *ts, const int *failed, int64_t *n_gen,
                         lyra_error *err) {
    char buf[4096];
    int32_t n_ctx = lyra_context_n_ctx(ctx), n_vocab = lyra_model_n_vocab(m);
    for (*n_gen = 0; o->n_predict < 0 || *n_gen < o->n_predict;) {
        if (app_interrupted) return lyra_err(err, LYRA_ERR_INTERRUPTED, "generate", "interrupted");
        const float *logits = lyra_get_logits(ctx, -1);
        if (!logits) return lyra_err(err, LYRA_ERR_RUNTIME, "generate", "no logits");
        if (eog) {
            memcpy(masked, logits, sizeof *masked * (size_t)n_vocab);
            for (int32_t i = 0; i < n_eog; i++) masked[eog[i]] = -INFINITY;
            logits = masked;
        }
        int32_t t = lyra_sampler_sample(s, logits);
        lyra_sampler_accept(s, t);
        if (lyra_token_is_eog(m, t)) {
            lyra_log(LYRA_LOG_DEBUG, "generate: end-of-generation token %d", (int)t);
            break;
        }
        ++*n_gen;
        size_t k = lyra_detok_feed(d, t, buf, sizeof buf);
        char *p = buf;
        if (lstrip && k > 0) {
            if (buf[0] == ' ') { p++; k--; }
            lstrip = 0;
        }
        int rc = lyra_textstream_feed(ts, p, k, err);
        if (rc) return rc;
        if (*failed) return lyra_err(err, LYRA_ERR_RUNTIME, "<stdout>", "write failed");
        if (ts->stopped) { /* the stop string and what follows are not printed */
            lyra_log(LYRA_LOG_DEBUG, "generate: stop string reached");
            break;
        }
        if (o->n_predict >= 0 && *n_gen >= o->n_predict) break;
        if (lyra_context_pos(ctx) >= n_ctx) {
            lyra_log(LYRA_LOG_INFO, "generate: the context is full (%d tokens); stopping", (int)n_ctx);
            break;
        }
        rc = lyra_eval(ctx, &t, 1, 0, err);
        if (rc) return rc;
    }
    return LYRA_OK;
}

/* --ignore-eos: the end-of-generation ids (*eog malloc'd) and a logits buffer. */
static int eog_mask(const lyra_model *m, int32_t **eog, int32_t *n_eog, float **masked,
                    lyra_error *err) {
    int32_t n_vocab = lyra_model_n_vocab(m);
    *eog = malloc(sizeof **eog * (size_t)n_vocab);
    *masked = malloc(sizeof **masked * (size_t)n_vocab);
    if (!*eog || !*masked) return lyra_err(err, LYRA_ERR_OOM, "generate", "out of memory");
    *n_eog = 0;
    for (int32_t i = 0; i < n_vocab; i++)
        if (lyra_token_is_eog(m, i)) (*eog)[(*n_eog)++] = i;
    return LYRA_OK;
}

static int run(const gen_opts *o, lyra_error *err) {
    lyra_model *m = NULL;
    lyra_context *ctx = NULL;
    lyra_sampler *s = NULL;
    lyra_detok *d = NULL;
    int32_t *toks = NULL;
    size_t n_toks = 0;
    int64_t n_gen = 0;
    int rc = lyra_model_open(o->model, &o->mp, &m, err);
    if (!rc) rc = lyra_context_new(m, &o->cp, &ctx, err);
    if (!rc && app_follow(ctx, &rc, err)) { /* mpirun: a rank other than 0 */
        lyra_context_free(ctx);
        lyra_model_free(m);
        return rc;
    }
    if (!rc) rc = prompt_tokens(m, o, &toks, &n_toks, err);
    int32_t n_ctx = rc ? 0 : lyra_context_n_ctx(ctx);
    if (!rc && n_toks >= (size_t)n_ctx)
        rc = lyra_err(err, LYRA_ERR_INPUT, o->prompt ? "-p" : "--ctx",
                      "the prompt is %zu token%s; the context (--ctx) holds %d", n_toks,
                      n_toks == 1 ? "" : "s", (int)n_ctx);
    lyra_sampler_params sp = o->sp;
    if (!rc && !o->seed_given) sp.seed = lyra_gen_random_seed();
    if (!rc) lyra_log(LYRA_LOG_INFO, "seed: %llu", (unsigned long long)sp.seed);
    if (!rc) {
        s = lyra_sampler_new(&sp, lyra_model_n_vocab(m));
        d = lyra_detok_new(m);
        if (!s || !d) rc = lyra_err(err, LYRA_ERR_OOM, "generate", "out of memory");
    }
    double t0 = app_now(), t1 = t0;
    if (!rc) {
        for (size_t i = 0; i < n_toks; i++) lyra_sampler_accept(s, toks[i]);
        rc = lyra_eval(ctx, toks, (int32_t)n_toks, 0, err);
        t1 = app_now();
        if (!rc) app_log_map(ctx); /* after the prompt: the KV bytes it allocated */
    }
    int32_t *eog = NULL, n_eog = 0;
    float *masked = NULL;
    if (!rc && o->ignore_eos) rc = eog_mask(m, &eog, &n_eog, &masked, err);
    lyra_textstream ts = {0};
    int failed = 0;
    int steps0 = m ? lyra_model_fallback_steps(m) : 0;
    if (!rc) rc = lyra_textstream_init(&ts, o->stop, o->n_stop, 0, write_stdout, &failed, "generate", err);
    /* an empty prompt is BOS alone too: its output has no leading space */
    int lstrip = !rc && (!o->prompt || !o->prompt[0]) && lyra_gen_space_prefix(m);
    if (!rc)
        rc = generate_loop(m, ctx, s, d, o, lstrip, eog, n_eog, masked,
                           &ts, &failed, &n_gen, err);
    free(eog);
    free(masked);
    double t2 = app_now();
    if (d && (ctx && (!rc || rc == LYRA_ERR_INTERRUPTED))) {
        char buf[64];
        lyra_error e2;
        int rc2 = LYRA_OK;
        if (!ts.stopped) { /* the decoder's tail */
            size_t k = lyra_detok_flush(d, buf, sizeof buf);
            rc2 = lyra_textstream_feed(&ts, buf, k, &e2);
        }
        if (!rc2) lyra_textstream_finish(&ts); /* the held-back tail, unless a stop string completes */
        if (!rc2 && failed) rc2 = lyra_err(&e2, LYRA_ERR_RUNTIME, "<stdout>", "write failed");
        if (!rc2) rc2 = emit("\n", 1, &e2);
        if (lyra_model_fallback_steps(m) > steps0) app_log_map(ctx); /* where it runs now */
        if (rc2 && !rc) {
            rc = rc2;
            *err = e2;
        }
    }
    if (!rc && n_gen > 0)
        lyra_log(LYRA_LOG_INFO,
                 "generate: prompt %zu token%s in %.3f s (%.1f tok/s), %lld tokens in %.3f s (%.2f tok/s)",
                 n_toks, n_toks == 1 ? "" : "s", t1 - t0, (double)n_toks / (t1 - t0 > 0 ? t1 - t0 : 1e-9), (long long)n_gen,
                 t2 - t1, (double)n_gen / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
    lyra_textstream_free(&ts);
    free(toks);
    lyra_detok_free(d);
    lyra_sampler_free(s);
    lyra_context_free(ctx);
    lyra_model_free(m);
    return rc;
}

int cmd_generate(int argc, char **argv, lyra_error *err) {
    gen_opts o;
    int rc = parse_opts(argc, argv, &o, err);
    if (!rc) rc = run(&o, err);
    free_opts(&o);
    return rc;
}
