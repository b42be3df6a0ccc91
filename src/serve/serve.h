/* serve.h: `lyra serve`, an OpenAI-compatible HTTP server (docs/server.md):
 * libmicrohttpd for HTTP (http.c), request parsing (request.h), OpenAI JSON
 * (oai.h) over the engine of src/gen/engine.h. The app layer fills
 * lyra_serve_opts from flags and config and calls lyra_serve_run, which
 * returns when *stop becomes non-zero (SIGINT / SIGTERM) after a graceful
 * shutdown. */
#ifndef LYRA_SERVE_SERVE_H
#define LYRA_SERVE_SERVE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "lyra.h"

typedef struct lyra_serve_opts {
    const char *host;            /* address to bind ("127.0.0.1", "0.0.0.0", "::1") */
    int port;                    /* TCP port, 0: any free one */
    int parallel;                /* slots */
    int queue;                   /* waiting requests at most */
    const char *api_key;         /* required bearer key, NULL / "": none */
    size_t max_body;             /* request body bytes at most */
    size_t max_header;           /* request line + headers bytes at most */
    int timeout_s;               /* idle connection timeout */
    int max_conns;               /* concurrent connections at most */
    double grace_s;              /* shutdown: seconds for in-flight requests */
    const char *model_path;      /* GGUF file */
    const char *model_id;        /* the id clients use ("model"), from the file name */
    lyra_model_params mp;        /* model parameters (device flags, geometry) */
    lyra_context_params cp;      /* each slot's context */
    lyra_sampler_params sp;      /* defaults for fields a request leaves out */
    int seed_given;              /* sp.seed is the default seed (else random per request) */
    int64_t max_tokens;          /* default max_tokens, -1: until the context is full */
    const char *system_prompt;   /* default system prompt, NULL: none */
    const char *chat_template;   /* template name, NULL: from the model */
    volatile sig_atomic_t *stop; /* non-zero: shut down */
} lyra_serve_opts;

/* Run the server until *o->stop; LYRA_OK after a clean shutdown. */
int lyra_serve_run(const lyra_serve_opts *o, lyra_error *err);

/* The chat page served at / (page.html, compiled in). */
extern const unsigned char lyra_serve_page[];
extern const size_t lyra_serve_page_len;

#endif
