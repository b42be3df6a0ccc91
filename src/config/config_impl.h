/* config_impl.h: what the config module's files share (not an API): the key
 * table, the value checker and small string helpers. */
#ifndef LYRA_CONFIG_IMPL_H
#define LYRA_CONFIG_IMPL_H

#include "config/config.h"

/* How a key's value is checked. */
typedef enum cfg_type {
    CFG_STRING,     /* a string (choices: one of them) */
    CFG_DEVICE_MAP, /* strategy string, GPU index, explicit map object */
    CFG_MEMSPEC,    /* object {device: size} */
    CFG_GPU_LAYERS, /* integer >= 0 or "all" */
    CFG_SPLIT,      /* array of proportions or "3,1" */
    CFG_INT,        /* integer in [imin, imax] */
    CFG_BOOL,       /* true / false */
    CFG_SEED,       /* integer 0..2^64-1 (or a digit string) */
    CFG_NUMBER,     /* number in [dmin, dmax] (dmin excluded when dmin_open) */
    CFG_STOP        /* array of non-empty strings (or one string) */
} cfg_type;

/* One key. */
typedef struct cfg_def {
    const char *name;    /* JSON path: "max_memory", "pipeline_kwargs.top_k" */
    const char *flag;    /* long command-line flag */
    cfg_type type;       /* how its value is checked */
    int nullable;        /* 1: null is accepted (= not given) */
    int64_t imin, imax;  /* CFG_INT range */
    double dmin, dmax;   /* CFG_NUMBER range */
    int dmin_open;       /* CFG_NUMBER: dmin itself is out of range */
    const char *choices; /* CFG_STRING: "a|b|c" allowed values, or NULL (any) */
    const char *defval;  /* default, JSON text */
} cfg_def;

extern const cfg_def lyra_cfg_defs[LYRA_CFG_N_KEYS];

/* transformers 4's name of dtype (5 says dtype): the same key, a file that
 * gives both with different values is an error. */
#define LYRA_CFG_TORCH_DTYPE "torch_dtype"

/* Keys Hugging Face users write that mean nothing here (at the top level,
 * or inside pipeline_kwargs when in_pipeline), with the reason printed in
 * the "ignored" note; NULL when name is not one of them. */
const char *lyra_cfg_hf_ignored(const char *name, int in_pipeline);

/* Check v against def k; *out: the normalized value (a new reference).
 * where: "FILE: path" or the flag, for messages. */
int lyra_cfg_check(int k, const json_t *v, const char *where, json_t **out, lyra_error *err);

/* Printable one-line rendering of a JSON value for messages ("a string
 * (\"abc\")", "1.5", "null"). */
void lyra_cfg_describe(const json_t *v, char *buf, size_t cap);

/* Quote len bytes of s for messages (core/size.h's quoting). */
const char *lyra_cfg_quote(const char *s, char *buf, size_t cap);

/* malloc'd copy (NULL if out of memory or s NULL). */
char *lyra_cfg_strdup(const char *s);

#endif
