/* cmd_chat.c: `lyra chat`: a conversation with a model, one user turn per
 * input line, replies streamed on stdout.
 *
 * Every turn the whole conversation is rendered with the chat template
 * (src/gen/chat.h) and tokenized; the tokens already in the KV cache (the
 * longest common prefix with the new ones) are kept and only the rest is
 * evaluated, so a turn costs its new tokens and the prompt is exactly the one
 * `lyra generate --parse-special -p TEXT` would see for the same text. When
 * the prompt and room for the reply do not fit the context, the oldest turns
 * are dropped (a notice on stderr) and what follows the system prompt is
 * evaluated again once. Replies stop at the model's end-of-generation
 * tokens, the template's end-of-turn token or text or a --stop text (not
 * shown), -n tokens, a full context, or Ctrl-C (which stops the reply, not
 * the chat; a second Ctrl-C within a second, or one while no reply is
 * generated, ends the chat with 130; SIGTERM ends it with 143). The settings are the flags over the model config file
 * (docs/config.md: model_id, system_prompt, chat_template, pipeline_kwargs,
 * devices), wired as generate's are; main.c runs chat when `lyra` is given
 * no command and a config file names a model.
 *
 * The conversation itself (template, turns, KV cache reuse, dropping old
 * turns, sampling with stop texts held back) is src/gen/chat_session.h's,
 * shared with the pipeline API; this file is the command: flags, the
 * terminal/pipe loop, the banner, /help /reset /exit, Ctrl-C and the
 * messages on stderr. --session NAME|PATH keeps the conversation (its KV
 * cache and a JSON transcript, chat_store.h) past the process: resumed at
 * the start without evaluating it again, saved at the end and on /save;
 * /load, /sessions and /system work with or without it. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "chat_store.h"
#include "config/model_ref.h"
#include "gen/chat.h"
#include "gen/chat_session.h"
#include "lyra.h"

const char cmd_chat_usage[] =
    "usage: lyra chat -m MODEL [--system-prompt TEXT] [--chat-template NAME|FILE]\n"
    "                 [-n N] [--temp T] [--greedy] [--top-k K] [--top-p P]\n"
    "                 [--min-p P] [--repeat-penalty R] [--repeat-last-n N]\n"
    "                 [--seed S] [--stop S] [--threads N] [--ctx N] [--batch N]\n"
    "                 [--kv-type f16|f32] [--load-in-8bit | --load-in-4bit]\n"
    "                 [--model-config FILE | --no-config] [device flags]\n"
    "                 [--session NAME|PATH [--rebuild]]\n"
    "\n"
    "Chat with a model: each line read is a user turn; the reply streams on\n"
    "stdout. The conversation stays in the KV cache, so a turn evaluates only\n"
    "its new tokens (logged as `chat: prompt N tokens: E evaluated, R reused`).\n"
    "When the prompt and room for the reply (-n, else a quarter of the context)\n"
    "do not fit, the oldest turns are dropped with a notice and the rest is\n"
    "evaluated once; the system prompt is never dropped. Ctrl-C stops a reply;\n"
    "a second Ctrl-C within a second, or one while no reply is being generated\n"
    "(at the prompt), ends the chat (exit 130); Ctrl-D or /exit leaves. On a\n"
    "terminal the prompt and map lines are shown only with -v. When stdin is\n"
    "not a terminal there is no banner and no prompt: one turn per line, each\n"
    "reply followed by an empty line, exit 0 at the end of the input. `lyra`\n"
    "with no command runs `lyra chat` when a config file names the model\n"
    "(model_id).\n"
    "\n"
    "  -m, --model MODEL      a GGUF file, a directory holding one, or\n"
    "                         org/name[:TAG] in the Hugging Face cache (required\n"
    "                         unless the config file has model_id)\n"
    "  --system-prompt TEXT   system prompt (default: none, or the one the\n"
    "                         model's template writes when given none)\n"
    "  --chat-template NAME|FILE  chatml | llama2 | llama3 | phi3 | gemma |\n"
    "                         zephyr | phi2 | plain | none | auto, or a Jinja\n"
    "                         template file (a path with a '/' or ending in .jinja)\n"
    "                         (default auto: the model's tokenizer.chat_template\n"
    "                         rendered as Jinja; else the architecture's usual one\n"
    "                         (qwen: chatml, gemma: gemma, phi3: phi3, phi2:\n"
    "                         Instruct:/Output:); else plain User:/Assistant:\n"
    "                         turns, with a warning); none: the texts as they are\n"
    "  -n, --n-predict N      tokens per reply at most (default 256; also\n"
    "                         --max-new-tokens); -1: until the end of the turn\n"
    "                         or a full context\n"
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
    "                         on stderr as `seed: S`); every reply starts from it\n"
    "  --stop S               end a reply before the text S (not shown, not kept\n"
    "                         in the conversation); repeatable\n"
    "  -t, --threads N        CPU threads (default: physical cores)\n"
    "  -c, --ctx N            context size (default: min(model's, 4096))\n"
    "  -b, --batch N          prompt tokens per forward pass (default 512)\n"
    "  --kv-type f16|f32      KV cache element type (default f16)\n"
    "  --load-in-8bit         store F32/F16/BF16 weights as Q8_0 on load\n"
    "  --load-in-4bit         store F32/F16/BF16 weights as 4-bit on load\n"
    "  --session NAME|PATH    keep the conversation: resume it (its KV cache is\n"
    "                         restored, not evaluated again) and save it at the\n"
    "                         end (end of input, /exit, Ctrl-C) and on /save. A\n"
    "                         NAME (1-64 of A-Z a-z 0-9 . _ -, no leading dot) is\n"
    "                         $XDG_STATE_HOME/lyra/sessions/NAME.lyrasession\n"
    "                         (default ~/.local/state), with the transcript\n"
    "                         NAME.json beside it; a PATH (with a '/') is used as\n"
    "                         is (docs/sessions.md)\n"
    "  --rebuild              a session saved for another model (or damaged):\n"
    "                         take its turns from the transcript and evaluate\n"
    "                         them again (without it that is an error)\n"
    "  --dtype D              Hugging Face folders: weights in memory as auto (as\n"
    "                         stored), float32, float16 or bfloat16 (docs/hf.md)\n"
    "  --revision REV         Hugging Face cache: the branch, tag or commit of\n"
    "                         org/name (default refs/main; config: revision)\n"
    "  -q, -v                 quieter / more verbose stderr\n"
    APP_CONFIG_USAGE
    APP_DEVFLAGS_USAGE
    "\n"
    "Every flag but --repeat-last-n, --no-mmap, --mlock, --min-ctx and\n"
    "--kv-chunk has a config file key (docs/config.md); flags win over the file.\n"
    "Lines that are commands: /help (this list), /reset (forget the turns, keep\n"
    "the system prompt), /exit or /quit (leave), /save (save the session now),\n"
    "/load NAME|PATH (save this session, resume another), /sessions (list the\n"
    "saved ones), /system TEXT (set the system prompt; the conversation is\n"
    "evaluated again from it at the next message). Empty lines are skipped; a\n"
    "line starting with // sends the text after the first /. On a terminal, a\n"
    "line ending in \\ continues on the next. Replies are shown without leading\n"
    "or trailing white space.\n";

/* ---------------------------------------------------------------- options */

/* Everything chat's flags and config file set. */
typedef struct chat_opts {
    char *model;              /* the model file (-m or model_id, resolved; malloc'd) */
    const char *model_ref;    /* -m / model_id as given, for the banner */
    lyra_config *cfg;         /* the effective configuration (owns the strings below) */
    const char *system;       /* system_prompt, NULL = none */
    const char *tmpl_name;    /* chat_template, NULL = the model's (auto) */
    const char *tmpl_source;  /* where chat_template came from ("flag:--chat-template", "file:...") */
    const char *const *stop;  /* [n_stop] stop strings (--stop, pipeline_kwargs.stop) */
    int n_stop;               /* their count */
    int64_t n_predict;        /* -n per reply, -1 = until the end of the turn */
    lyra_sampler_params sp;   /* sampling */
    int seed_given;           /* a seed was given (--seed or the config) */
    lyra_context_params cp;   /* context */
    lyra_model_params mp;     /* device flags */
    const char *session;      /* --session NAME|PATH, NULL: none */
    int rebuild;              /* --rebuild */
} chat_opts;

/* --chat-template NAME|FILE: a template chat knows (any case), auto, or a
 * Jinja template file (a path with a '/' or ending in .jinja or .j2),
 * checked here with chat's own message; *(const char **)dst keeps the value
 * as typed. Set on the config (a name lowercased) after the file is loaded. */
static int flag_template(app_args *a, const char *arg, void *dst, lyra_error *err) {
    (void)arg;
    const char **name = dst;
    lyra_chat_kind k;
    int rc = args_str(a, name, err);
    if (!rc && strcmp(*name, "auto") && lyra_chat_kind_from_name(*name, &k) && !lyra_chat_template_is_file(*name))
        rc = lyra_err(err, LYRA_ERR_INPUT, a->flag,
                      "unknown template '%s' (expected %s or auto, or a Jinja template file: a path with a "
                      "'/' or ending in .jinja)",
                      *name, LYRA_CHAT_NAMES);
    return rc;
}

/* --chat-template's value over the config file's chat_template. */
static int set_template_flag(lyra_config *c, const char *name, lyra_error *err) {
    if (lyra_chat_template_is_file(name))
        return lyra_config_set(c, "chat_template", name, "flag:--chat-template", "--chat-template", err);
    char low[32];
    size_t n = strlen(name);
    if (n >= sizeof low) n = sizeof low - 1; /* checked already: a known name is short */
    for (size_t i = 0; i < n; i++)
        low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
    low[n] = '\0';
    return lyra_config_set(c, "chat_template", low, "flag:--chat-template", "--chat-template", err);
}

/* The model file: -m as chat always named it in messages ("-m: ..."), a
 * config's model_id with its file and key. */
static int resolve_model(lyra_config *c, char **path, lyra_error *err) {
    const json_t *m = c->value[LYRA_CFG_MODEL_ID];
    if (json_is_string(m) && !strncmp(c->source[LYRA_CFG_MODEL_ID], "flag:", 5)) {
        int rc = lyra_config_resolve_model(c, json_string_value(m), "-m", path, err);
        if (!rc && (rc = lyra_config_load_generation(c, *path, err))) {
            free(*path);
            *path = NULL;
        }
        return rc;
    }
    return app_config_model(c, path, err);
}

/* Flags, then the config file under them (docs/config.md), then the model. */
static int parse_opts(int argc, char **argv, chat_opts *o, lyra_error *err) {
    memset(o, 0, sizeof *o);
    o->n_predict = -1;
    o->sp = lyra_sampler_default_params();
    o->cp = lyra_context_default_params();
    o->mp = lyra_model_default_params();
    const char *tmpl_flag = NULL;
    const app_opt opts[] = {
        APP_FN("--chat-template", NULL, flag_template, &tmpl_flag),
        APP_I32("--repeat-last-n", NULL, &o->sp.repeat_last_n, 0, 1 << 20),
        APP_STR("--session", NULL, &o->session),
        APP_SWITCH("--rebuild", &o->rebuild),
        APP_OPT_END_,
    };
    int rc = args_parse(argc, argv, NULL, opts, APP_CFG_ALL, &o->mp, &o->cfg, err);
    if (!rc && tmpl_flag) rc = set_template_flag(o->cfg, tmpl_flag, err);
    if (!rc && o->rebuild && !o->session) rc = lyra_err(err, LYRA_ERR_INPUT, "--rebuild", "needs --session");
    if (!rc) rc = resolve_model(o->cfg, &o->model, err);
    if (!rc) rc = app_config_apply(o->cfg, &o->mp, &o->cp, &o->sp, &o->seed_given, err);
    lyra_config_gen g;
    if (!rc) rc = lyra_config_apply_gen(o->cfg, &g, err);
    if (!rc) {
        o->model_ref = g.model_id;
        o->system = g.system_prompt;
        o->tmpl_name = g.chat_template;
        o->tmpl_source = o->cfg->source[LYRA_CFG_CHAT_TEMPLATE];
        o->n_predict = g.max_new_tokens;
        o->stop = g.stop;
        o->n_stop = g.n_stop;
    }
    return rc;
}

static void free_opts(chat_opts *o) {
    free(o->model);
    lyra_config_free(o->cfg);
    o->model = NULL;
    o->cfg = NULL;
}
/* ---------------------------------------------------------------- session */

/* The conversation (src/gen/chat_session.h) and what the command adds. */
typedef struct chat_session {
    lyra_chat_session conv;  /* model, context, sampler, template, turns, KV tokens */
    int64_t n_predict;       /* -n */
    int interactive;         /* stdin is a terminal */
    int mapped;              /* the map line was logged */
    int stopped;             /* Ctrl-C stopped the last reply */
    int followed;            /* mpirun, a rank other than 0: followed rank 0's chat */
    char in_buf[4096];       /* stdin, read by stdin_getline (not stdio) */
    size_t in_len, in_pos;
    app_chat_store store;    /* --session / /load: where the session is kept */
    int has_store;           /* store is set */
    char *system;            /* the system prompt when a session or /system set it (owned) */
    const char *model;       /* the model file (borrowed from the options) */
    json_t *settings;        /* the settings the transcript records */
} chat_session;

static void session_free(chat_session *cs) {
    lyra_chat_session_free(&cs->conv);
    if (cs->has_store) app_store_free(&cs->store);
    free(cs->system);
    json_decref(cs->settings);
}

/* The system prompt becomes sys (owned; NULL: none). */
static void set_system(chat_session *cs, char *sys) {
    free(cs->system);
    cs->system = sys;
    cs->conv.system = sys && sys[0] ? sys : NULL;
}

/* Save the session (when there is one); a note with the counts. */
static int store_save(chat_session *cs, lyra_error *err) {
    if (!cs->has_store) return LYRA_OK;
    int rc = app_store_save(&cs->store, &cs->conv, cs->model, cs->settings, err);
    if (!rc)
        lyra_log(LYRA_LOG_INFO, "chat: session %s saved: %d turn%s, %d tokens", cs->store.name, cs->conv.n_turns,
                 cs->conv.n_turns == 1 ? "" : "s", (int)cs->conv.n_kv);
    return rc;
}

/* Resume the session named arg (a NAME or PATH) into the conversation, or
 * start it when there is none yet. On an error nothing changed. */
static int store_open(chat_session *cs, const char *arg, int rebuild, const char *flag, lyra_error *err) {
    app_chat_store st;
    int rc = app_store_resolve(arg, flag, &st, err);
    if (rc) return rc;
    int found = 0, rebuilt = 0;
    char *sys = NULL;
    rc = app_store_load(&st, &cs->conv, rebuild, &found, &rebuilt, &sys, err);
    if (rc) {
        app_store_free(&st);
        return rc;
    }
    if (cs->has_store) app_store_free(&cs->store);
    cs->store = st;
    cs->has_store = 1;
    if (!found) {
        lyra_log(LYRA_LOG_INFO, "chat: new session %s (%s)", st.name, st.file);
        return LYRA_OK;
    }
    if (cs->conv.system && (!sys || strcmp(sys, cs->conv.system)))
        lyra_log(LYRA_LOG_WARN, "chat: the session's system prompt is kept (/system TEXT changes it)");
    set_system(cs, sys);
    if (rebuilt)
        lyra_log(LYRA_LOG_WARN, "chat: session %s rebuilt from its transcript: %d turn%s, evaluated again with "
                 "the next message", st.name, cs->conv.n_turns, cs->conv.n_turns == 1 ? "" : "s");
    else
        lyra_log(LYRA_LOG_INFO, "chat: session %s resumed: %d turn%s, %d tokens, not evaluated again", st.name,
                 cs->conv.n_turns, cs->conv.n_turns == 1 ? "" : "s", (int)cs->conv.n_kv);
    return LYRA_OK;
}

/* What the transcript records of the settings. */
static json_t *settings_json(const chat_opts *o, const lyra_sampler_params *sp, const chat_session *cs) {
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)sp->seed);
    return json_pack("{s:s?, s:s?, s:s, s:I, s:f, s:i, s:f, s:f, s:f, s:i, s:s, s:i}", "model_ref", o->model_ref,
                     "chat_template", o->tmpl_name, "seed", seed, "max_new_tokens", (json_int_t)o->n_predict,
                     "temperature", (double)sp->temperature, "top_k", (int)sp->top_k, "top_p", (double)sp->top_p,
                     "min_p", (double)sp->min_p, "repeat_penalty", (double)sp->repeat_penalty, "repeat_last_n",
                     (int)sp->repeat_last_n, "kv_type", o->cp.kv_type == LYRA_KV_F32 ? "f32" : "f16",
                     "context_length", (int)cs->conv.n_ctx);
}

/* The template: --chat-template or the config's chat_template (a format
 * name, or a Jinja file), else the model's tokenizer.chat_template rendered
 * as Jinja (said on stderr; when it does not parse, the format it shows is
 * used instead, with a warning, or it is an error if it shows none), else
 * plain; then the texts that end a reply: the template's, then --stop's. */
static int setup_template(chat_session *cs, const chat_opts *o, lyra_error *err) {
    lyra_chat_kind kind;
    if (o->tmpl_name) {
        const char *src = o->tmpl_source ? o->tmpl_source : "";
        const char *from = !strncmp(src, "file:", 5) ? src + 5 : NULL;
        if (lyra_chat_template_is_file(o->tmpl_name)) {
            int rc = lyra_chat_session_template_jinja(&cs->conv, o->tmpl_name, o->stop, o->n_stop, "chat", err);
            if (!rc) {
                if (from) lyra_log(LYRA_LOG_INFO, "chat: template %s (Jinja; chat_template in %s)", o->tmpl_name, from);
                else lyra_log(LYRA_LOG_INFO, "chat: template %s (Jinja; --chat-template)", o->tmpl_name);
            }
            return rc;
        }
        if (lyra_chat_kind_from_name(o->tmpl_name, &kind))
            return lyra_err(err, LYRA_ERR_INPUT, from ? from : "--chat-template",
                            "chat_template: unknown template '%s' (expected %s)", o->tmpl_name,
                            LYRA_CHAT_NAMES);
        if (from)
            lyra_log(LYRA_LOG_INFO, "chat: template %s (chat_template in %s)", lyra_chat_kind_name(kind), from);
        else
            lyra_log(LYRA_LOG_INFO, "chat: template %s (--chat-template)", lyra_chat_kind_name(kind));
    } else {
        int known = 0, has = 0;
        kind = lyra_chat_session_detect(&cs->conv, &known, &has);
        if (has) {
            int rc = lyra_chat_session_template_jinja(&cs->conv, NULL, o->stop, o->n_stop, "chat", err);
            if (!rc) {
                lyra_log(LYRA_LOG_INFO, "chat: template %s (from the model's tokenizer.chat_template)",
                         known ? lyra_chat_kind_name(kind) : "jinja");
                lyra_log(LYRA_LOG_INFO, "chat: the model's template is rendered as Jinja%s",
                         known ? "" : "; a reply ends at the end-of-sequence token");
                if (!cs->conv.system && cs->conv.tmpl.default_system[0])
                    lyra_log(LYRA_LOG_INFO, "chat: the template's default system prompt: %s",
                             cs->conv.tmpl.default_system);
                return LYRA_OK;
            }
            if (!known || rc != LYRA_ERR_INPUT) {
                if (rc == LYRA_ERR_INPUT)
                    lyra_log(LYRA_LOG_INFO, "chat: --chat-template NAME|FILE chooses another template (%s)",
                             LYRA_CHAT_NAMES);
                return rc;
            }
            lyra_log(LYRA_LOG_WARN, "chat: %s; using lyra's %s format instead (--chat-template NAME|FILE to "
                     "choose)", err->msg, lyra_chat_kind_name(kind));
            lyra_err_clear(err);
        } else if (known == 2)
            lyra_log(LYRA_LOG_INFO, "chat: template %s (%s models' usual; the model has no chat template "
                     "(tokenizer.chat_template))", lyra_chat_kind_name(kind), lyra_model_arch(cs->conv.m));
        else
            lyra_log(LYRA_LOG_WARN, "chat: the model has no chat template (tokenizer.chat_template); using plain "
                     "User:/Assistant: turns (--chat-template NAME to choose: %s)", LYRA_CHAT_NAMES);
    }
    int rc = lyra_chat_session_template(&cs->conv, kind, o->stop, o->n_stop, "chat", err);
    if (!rc && !cs->conv.system && cs->conv.tmpl.default_system[0])
        lyra_log(LYRA_LOG_INFO, "chat: the template's default system prompt: %s", cs->conv.tmpl.default_system);
    return rc;
}

static int session_open(chat_session *cs, const chat_opts *o, lyra_error *err) {
    memset(cs, 0, sizeof *cs);
    cs->n_predict = o->n_predict;
    cs->interactive = isatty(STDIN_FILENO);
    if (strcmp(o->model, o->model_ref)) lyra_log(LYRA_LOG_INFO, "chat: model %s", o->model);
    int rc = lyra_chat_session_open(&cs->conv, o->model, &o->mp, &o->cp, "chat", err);
    if (rc) return rc;
    if (app_follow(cs->conv.ctx, &rc, err)) { /* mpirun: a rank other than 0 */
        cs->followed = 1;
        return rc;
    }
    cs->conv.system = o->system && o->system[0] ? o->system : NULL;
    lyra_sampler_params sp = o->sp;
    if (!o->seed_given) sp.seed = lyra_gen_random_seed();
    lyra_log(LYRA_LOG_INFO, "seed: %llu", (unsigned long long)sp.seed);
    rc = lyra_chat_session_sampler(&cs->conv, &sp, "chat", err);
    if (!rc) rc = setup_template(cs, o, err);
    cs->model = o->model;
    if (!rc) cs->settings = settings_json(o, &sp, cs);
    if (!rc && o->session) rc = store_open(cs, o->session, o->rebuild, "--session", err);
    return rc;
}

/* ---------------------------------------------------------------- prompt */

/* Tokens of the prompt for the last turn, dropping the oldest turns while
 * the prompt and the room kept for the reply do not fit (a notice). *sent 0
 * (and nothing allocated, the message forgotten) when even the last turn
 * alone does not fit. */
static int fit_prompt(chat_session *cs, int32_t **toks, size_t *n, int *sent, lyra_error *err) {
    int dropped = 0;
    int rc = lyra_chat_session_fit(&cs->conv, cs->n_predict, toks, n, &dropped, sent, err);
    if (rc) return rc;
    if (!*sent) { /* forget this message, keep the conversation */
        lyra_log(LYRA_LOG_WARN, "chat: the message needs %zu tokens with the system prompt; the context "
                 "(--ctx) holds %d: not sent", *n, (int)cs->conv.n_ctx);
        lyra_chat_session_unask(&cs->conv);
    } else if (dropped) {
        lyra_log(LYRA_LOG_WARN, "chat: dropped the %d oldest turn%s to fit the context of %d tokens (the "
                 "system prompt is kept)", dropped, dropped == 1 ? "" : "s", (int)cs->conv.n_ctx);
    }
    return LYRA_OK;
}

/* Evaluate what of toks[n] is not in the KV cache already. */
static int eval_prompt(chat_session *cs, const int32_t *toks, size_t n, lyra_error *err) {
    if (n == 0) return lyra_err(err, LYRA_ERR_INPUT, "chat", "the prompt has no tokens");
    int32_t keep = 0;
    int rc = lyra_chat_session_eval(&cs->conv, toks, n, 1, &keep, err);
    if (rc) return rc;
    /* on a terminal these lines would come between the user's line and the
     * reply: only with -v there */
    lyra_log(cs->interactive ? LYRA_LOG_DEBUG : LYRA_LOG_INFO,
             "chat: prompt %zu tokens: %zu evaluated, %d reused from the cache", n, n - (size_t)keep, (int)keep);
    if (!cs->mapped && (!cs->interactive || lyra_log_enabled(LYRA_LOG_DEBUG))) app_log_map(cs->conv.ctx);
    cs->mapped = 1;
    return LYRA_OK;
}

/* ---------------------------------------------------------------- reply */

/* The reply's text as decided (src/gen/textstream.h) to stdout; *failed
 * (user) on a write error, which cancels the reply. */
static int write_stdout(const char *s, size_t n, void *user) {
    if (fwrite(s, 1, n, stdout) != n || fflush(stdout) != 0) {
        *(int *)user = 1;
        return 1;
    }
    return 0;
}

/* Generate the reply to the prompt in the cache, streamed on stdout without
 * white space at either end; its text in *text (malloc'd). *interrupted
 * when Ctrl-C stopped it. */
static int generate_reply(chat_session *cs, char **text, int *interrupted, lyra_error *err) {
    lyra_chat_session *c = &cs->conv;
    int failed = 0;
    lyra_textstream t;
    int rc = lyra_textstream_init(&t, c->stops, c->n_stops, 1, write_stdout, &failed, "chat", err);
    lyra_gen_opts go = {cs->n_predict, 1, 0, &app_interrupted, "chat"};
    lyra_gen_result res = {0, 0, 0};
    double t0 = app_now();
    if (!rc) rc = lyra_chat_session_generate(c, &t, &go, &res, err);
    if (!rc && failed) rc = lyra_err(err, LYRA_ERR_RUNTIME, "<stdout>", "write failed");
    if (res.full)
        lyra_log(LYRA_LOG_WARN, "chat: the context is full (%d tokens): the reply is cut; old turns are "
                 "dropped at the next turn", (int)c->n_ctx);
    double dt = app_now() - t0;
    lyra_log(LYRA_LOG_DEBUG, "chat: reply %lld tokens in %.3f s (%.1f tok/s)", (long long)res.n_gen, dt,
             (double)res.n_gen / (dt > 0 ? dt : 1e-9));
    if (rc) {
        lyra_textstream_free(&t);
        return rc;
    }
    *interrupted = res.interrupted;
    *text = lyra_textstream_take(&t);
    return LYRA_OK;
}

/* ---------------------------------------------------------------- turns */

/* Ctrl-C in a chat. The handler's state is here (a handler can reach no
 * other): chat_in_reply is 1 while a reply is generated; chat_quit is set by
 * a Ctrl-C that ends the chat: one while no reply is generated (at the
 * prompt, during the prompt's evaluation) or one within a second of the
 * previous; a Ctrl-C after that exits at once. */
static volatile sig_atomic_t chat_in_reply, chat_quit;
static long long chat_last_sigint_ms = -1; /* written by the handler only */

static void on_sigint(int sig) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* async-signal-safe */
    long long ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (chat_quit) _exit(128 + SIGINT); /* asked to end already and still here */
    if (!chat_in_reply || (chat_last_sigint_ms >= 0 && ms - chat_last_sigint_ms < 1000)) chat_quit = 1;
    chat_last_sigint_ms = ms;
    if (app_interrupted != SIGTERM) app_interrupted = sig;
}

/* Ctrl-C goes to on_sigint from now on (SIGTERM keeps main's handler). No
 * SA_RESTART: a read waiting for input returns at once. */
static void arm_sigint(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, NULL);
}

/* The chat ends on Ctrl-C: exit 130; quietly on a terminal (an empty
 * message: main prints no error line). */
static int chat_quit_error(const chat_session *cs, lyra_error *err) {
    if (!cs->interactive) return lyra_err(err, LYRA_ERR_INTERRUPTED, "chat", "interrupted");
    lyra_err_clear(err);
    return LYRA_ERR_INTERRUPTED;
}

/* Answer one user message: prompt, reply on stdout, the turn kept. */
static int chat_turn(chat_session *cs, const char *msg, lyra_error *err) {
    int rc = lyra_chat_session_ask(&cs->conv, msg, err);
    int32_t *toks = NULL;
    size_t n = 0;
    int sent = 0;
    if (!rc) rc = fit_prompt(cs, &toks, &n, &sent, err);
    if (!rc && !sent) return LYRA_OK; /* not sent; said on stderr */
    if (!rc) rc = eval_prompt(cs, toks, n, err);
    free(toks);
    if (rc) return rc;
    if (chat_quit) return chat_quit_error(cs, err); /* Ctrl-C during the prompt */
    char *text = NULL;
    int interrupted = 0;
    chat_in_reply = 1;
    rc = generate_reply(cs, &text, &interrupted, err);
    chat_in_reply = 0;
    if (rc) return rc;
    lyra_chat_session_answer(&cs->conv, text);
    if (interrupted && app_interrupted == SIGTERM) /* not a Ctrl-C: the chat ends */
        return lyra_err(err, LYRA_ERR_INTERRUPTED, "chat", "terminated");
    if (chat_quit) { /* a second Ctrl-C: the reply's line ended, then exit */
        if (cs->interactive) fputs("\n", stdout);
        return chat_quit_error(cs, err);
    }
    if (interrupted) cs->stopped = 1; /* said once the reply's line is ended */
    if (app_interrupted == SIGINT) app_interrupted = 0; /* this reply's (also one as it ended) */
    return LYRA_OK;
}

static void print_help(void) {
    fputs("commands: /help (this list), /reset (forget the turns, keep the system prompt),\n"
          "/exit or /quit (leave; also Ctrl-D), /save (save the session), /load NAME|PATH\n"
          "(resume another session), /sessions (list them), /system TEXT (set the system\n"
          "prompt). Ctrl-C stops a reply (twice, or at the prompt: leave). A line ending\n"
          "in \\ continues on the next; // at the start sends a line starting with /.\n",
          stderr);
}

/* Read more of stdin into cs->in_buf: the bytes read, 0 at the end of
 * input, -1 with errno on an error or EINTR when a Ctrl-C or SIGTERM came.
 * A signal that arrives at any moment, even just before the wait, is seen:
 * SIGINT and SIGTERM are blocked while the flags are checked, and pselect
 * unblocks them as it starts to wait (getline could miss one that lands
 * between the check and its read, and then wait for input forever). */
static ssize_t stdin_fill(chat_session *cs) {
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    ssize_t k = -1;
    if (app_interrupted || chat_quit) {
        errno = EINTR;
    } else {
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(STDIN_FILENO, &rd);
        if (pselect(STDIN_FILENO + 1, &rd, NULL, NULL, NULL, &old) >= 0) k = 0;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (k < 0) return -1;
    if (cs->in_pos == cs->in_len) cs->in_pos = cs->in_len = 0;
    do k = read(STDIN_FILENO, cs->in_buf + cs->in_len, sizeof cs->in_buf - cs->in_len);
    while (k < 0 && errno == EINTR && !app_interrupted && !chat_quit);
    if (k > 0) cs->in_len += (size_t)k;
    return k;
}

/* getline over cs->in_buf: one line with its newline (the last may lack
 * it) into *part; -1 at the end of input (errno 0), on an error or on a
 * signal (errno set). */
static ssize_t stdin_getline(chat_session *cs, char **part, size_t *cap) {
    size_t n = 0;
    for (;;) {
        while (cs->in_pos < cs->in_len) {
            char c = cs->in_buf[cs->in_pos++];
            if (n + 2 > *cap) {
                size_t c2 = *cap ? *cap * 2 : 128;
                char *p = realloc(*part, c2);
                if (!p) {
                    errno = ENOMEM;
                    return -1;
                }
                *part = p;
                *cap = c2;
            }
            (*part)[n++] = c;
            (*part)[n] = '\0';
            if (c == '\n') return (ssize_t)n;
        }
        cs->in_pos = cs->in_len = 0; /* all consumed */
        ssize_t k = stdin_fill(cs);
        if (k == 0) {
            errno = 0;
            return n ? (ssize_t)n : -1;
        }
        if (k < 0) return -1; /* a part of a line read so far goes with the input */
    }
}

/* Read one line (without its newline) into *line; *got 0 at the end of
 * input. On a terminal lines ending in '\' continue. */
static int read_line(chat_session *cs, char **line, size_t *cap, int *got, lyra_error *err) {
    *got = 0;
    size_t len = 0;
    char *part = NULL;
    size_t part_cap = 0;
    if (!*line) {
        *cap = 256;
        *line = malloc(*cap);
        if (!*line) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    }
    (*line)[0] = '\0';
    for (;;) {
        if (cs->interactive) {
            fputs(len ? "... " : "> ", stderr);
            fflush(stderr);
        }
        errno = 0;
        ssize_t k = stdin_getline(cs, &part, &part_cap);
        if (k < 0) {
            int e = errno;
            free(part);
            if (app_interrupted || chat_quit) {
                if (cs->interactive) fputs("\n", stderr);
                if (app_interrupted == SIGTERM) return lyra_err(err, LYRA_ERR_INTERRUPTED, "chat", "terminated");
                return chat_quit_error(cs, err);
            }
            if (e == ENOMEM) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
            if (e) return lyra_err(err, LYRA_ERR_RUNTIME, "<stdin>", "read error: %s", strerror(e));
            if (cs->interactive) fputs("\n", stderr);
            *got = len > 0;
            return LYRA_OK;
        }
        if (k > 0 && part[k - 1] == '\n') part[--k] = '\0';
        if (k > 0 && part[k - 1] == '\r') part[--k] = '\0';
        int more = cs->interactive && k > 0 && part[k - 1] == '\\';
        if (more) part[--k] = '\0';
        if (len + (size_t)k + 2 > *cap) {
            size_t c = *cap;
            while (len + (size_t)k + 2 > c) c *= 2;
            char *p = realloc(*line, c);
            if (!p) {
                free(part);
                return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
            }
            *line = p;
            *cap = c;
        }
        memcpy(*line + len, part, (size_t)k);
        len += (size_t)k;
        if (more) (*line)[len++] = '\n';
        (*line)[len] = '\0';
        if (!more) break;
    }
    free(part);
    *got = 1;
    return LYRA_OK;
}

/* The loop: read, answer, until EOF or /exit. */
static int chat_loop(chat_session *cs, const chat_opts *o, lyra_error *err) {
    if (cs->interactive)
        fprintf(stderr,
                "lyra chat: %s, template %s, context %d tokens.\n"
                "Type a message and Enter. /help lists the commands; Ctrl-C stops a reply, Ctrl-D or /exit "
                "leaves.\n",
                o->model_ref, lyra_chat_kind_name(cs->conv.tmpl.kind), (int)cs->conv.n_ctx);
    char *line = NULL;
    size_t cap = 0;
    int rc = LYRA_OK;
    while (!rc) {
        int got = 0;
        rc = read_line(cs, &line, &cap, &got, err);
        if (!rc && chat_quit) rc = chat_quit_error(cs, err); /* Ctrl-C between turns */
        if (!rc && app_interrupted == SIGTERM) rc = lyra_err(err, LYRA_ERR_INTERRUPTED, "chat", "terminated");
        if (rc || !got) break;
        const char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) continue;
        if (s[0] == '/' && s[1] != '/') {
            char cmd[32];
            size_t k = strcspn(s, " \t");
            snprintf(cmd, sizeof cmd, "%.*s", (int)(k < 31 ? k : 31), s);
            const char *arg = s + k;
            while (*arg == ' ' || *arg == '\t') arg++;
            if (!strcmp(cmd, "/exit") || !strcmp(cmd, "/quit")) break;
            if (!strcmp(cmd, "/help")) print_help();
            else if (!strcmp(cmd, "/save")) {
                if (!cs->has_store)
                    lyra_log(LYRA_LOG_WARN, "chat: no session to save to: start with --session NAME, or /load NAME");
                else if (store_save(cs, err)) {
                    lyra_log(LYRA_LOG_WARN, "chat: %s", err->msg);
                    lyra_err_clear(err);
                }
            } else if (!strcmp(cmd, "/load")) {
                if (!*arg) lyra_log(LYRA_LOG_WARN, "chat: /load NAME|PATH");
                else if (store_save(cs, err) || store_open(cs, arg, 0, "/load", err)) {
                    lyra_log(LYRA_LOG_WARN, "chat: %s", err->msg);
                    lyra_err_clear(err);
                }
            } else if (!strcmp(cmd, "/sessions")) {
                if (app_store_list(stderr, err)) {
                    lyra_log(LYRA_LOG_WARN, "chat: %s", err->msg);
                    lyra_err_clear(err);
                }
            } else if (!strcmp(cmd, "/system")) {
                char *t = strdup(arg);
                if (!t) rc = lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
                else {
                    set_system(cs, t);
                    lyra_log(LYRA_LOG_INFO, "chat: system prompt %s; the conversation is evaluated again from it "
                             "at the next message", *t ? "set" : "cleared");
                }
            }
            else if (!strcmp(cmd, "/reset")) {
                lyra_chat_session_drop(&cs->conv, cs->conv.n_turns);
                lyra_log(LYRA_LOG_INFO, "chat: the conversation is cleared (the system prompt is kept)");
            } else {
                lyra_log(LYRA_LOG_WARN, "chat: unknown command %s (/help lists them; // sends a line "
                         "starting with /)", cmd);
            }
            continue;
        }
        if (s[0] == '/') s++; /* "//text" sends "/text" */
        rc = chat_turn(cs, s, err);
        if (!rc && fputs(cs->interactive ? "\n" : "\n\n", stdout) == EOF)
            rc = lyra_err(err, LYRA_ERR_RUNTIME, "<stdout>", "write failed");
        if (!rc && fflush(stdout) != 0) rc = lyra_err(err, LYRA_ERR_RUNTIME, "<stdout>", "write failed");
        if (cs->stopped) lyra_log(LYRA_LOG_WARN, "chat: reply stopped (Ctrl-C)");
        cs->stopped = 0;
    }
    free(line);
    return rc;
}

int cmd_chat(int argc, char **argv, lyra_error *err) {
    chat_opts o;
    int rc = parse_opts(argc, argv, &o, err);
    if (rc) {
        free_opts(&o);
        return rc;
    }
    chat_session cs;
    rc = session_open(&cs, &o, err);
    if (cs.followed) { /* mpirun: rank 0 read the terminal and printed */
        session_free(&cs);
        free_opts(&o);
        return rc;
    }
    if (!rc && app_interrupted) rc = lyra_err(err, LYRA_ERR_INTERRUPTED, "chat", "interrupted");
    if (!rc) {
        arm_sigint();
        rc = chat_loop(&cs, &o, err);
        if (rc == LYRA_OK || rc == LYRA_ERR_INTERRUPTED) { /* the session is kept at every end but an error */
            lyra_error serr;
            int src = store_save(&cs, &serr);
            if (src && rc == LYRA_OK) {
                rc = src;
                *err = serr;
            } else if (src)
                lyra_log(LYRA_LOG_ERROR, "chat: %s", serr.msg);
        }
    }
    session_free(&cs);
    free_opts(&o);
    return rc;
}
