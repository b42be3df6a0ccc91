/* chat.h: chat templates. Which prompt format a model wants (recognised from
 * its tokenizer.chat_template string, or named by the user), and the prompt
 * text of a conversation in that format, exactly as the model's Jinja
 * template renders it with add_generation_prompt (Hugging Face's rendering:
 * trim_blocks, lstrip_blocks); no Jinja is interpreted here.
 *
 * A conversation is an optional system prompt and a list of turns, each a
 * user message and the assistant's reply; the last turn has no reply yet and
 * the text ends with the assistant's header (the generation prompt). The
 * formats, with S = system, U = user, A = reply (trim = Python's str.strip):
 *   chatml  <|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n
 *           <|im_start|>assistant\nA<|im_end|>\n ...   (Qwen, OpenHermes; a
 *           default system prompt written in the model's template is used
 *           when none is given, as Qwen's template does)
 *   llama2  <s>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] U [/INST]
 *           (the system block is part of the first user message; the user
 *           message with it and A are trimmed)
 *   llama3  <|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>
 *           ...user...\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n
 *           (S, U, A trimmed; BOS before the first message)
 *   phi3    <|system|>\nS<|end|>\n<|user|>\nU<|end|>\n<|assistant|>\nA<|end|>\n
 *   gemma   <bos><start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n
 *           (no system role: S + "\n\n" goes in front of the first user
 *           message, as Gemma 3's template does; U, A trimmed)
 *   zephyr  <|system|>\nS</s>\n<|user|>\nU</s>\n<|assistant|>\nA</s>\n
 *   plain   S\n\nUser: U\nAssistant: A\nUser: U\nAssistant:   (U, A trimmed;
 *           for models without a template)
 *   phi2    S\nInstruct: U\nOutput: A\nInstruct: U\nOutput:   (U, A trimmed:
 *           Phi-2's model card's QA format; Phi-2 has no template)
 *   none    S U A U ... : the texts concatenated as they are, nothing added
 * BOS/EOS texts are the model's (the template's bos_token / eos_token).
 *
 * A model's own template (tokenizer.chat_template) or a template file is
 * rendered as the Jinja program it is (src/jinja/, lyra_chat_init_jinja):
 * messages [{role, content}] with the system message first, tools and
 * documents None, add_generation_prompt true, bos_token and eos_token, as
 * transformers' apply_chat_template does. The formats above are the fallback
 * for files without a template, and what --chat-template NAME chooses. */
#ifndef LYRA_CHAT_H
#define LYRA_CHAT_H

#include <stddef.h>

#include "core/err.h"

struct lyra_jinja;

typedef enum lyra_chat_kind {
    LYRA_CHAT_NONE = 0,
    LYRA_CHAT_PLAIN,
    LYRA_CHAT_CHATML,
    LYRA_CHAT_LLAMA2,
    LYRA_CHAT_LLAMA3,
    LYRA_CHAT_PHI3,
    LYRA_CHAT_GEMMA,
    LYRA_CHAT_ZEPHYR,
    LYRA_CHAT_PHI2,
} lyra_chat_kind;

/* The names lyra_chat_kind_from_name accepts, for messages (and "phi2",
 * kept out of this list so that the messages of existing models stay as they
 * were). */
#define LYRA_CHAT_NAMES "chatml, llama2, llama3, phi3, gemma, zephyr, plain, none"

/* Most stop strings a template has. */
#define LYRA_CHAT_MAX_STOPS 4

/* A template ready to render. */
typedef struct lyra_chat {
    lyra_chat_kind kind;        /* the format */
    char bos[128];              /* text of the model's BOS token ("<s>"), "" if none */
    char eos[128];              /* text of the model's EOS token ("</s>"), "" if none */
    char default_system[1024];  /* system prompt the model's own template uses when
                                   none is given (chatml only), "" if none */
    struct lyra_jinja *jinja;   /* a Jinja template rendered instead of kind's format
                                   (owned: lyra_chat_free); kind then only names the
                                   stop strings (LYRA_CHAT_NONE: the EOS text alone) */
} lyra_chat;

/* One exchange. */
typedef struct lyra_chat_turn {
    const char *user;      /* the user's message */
    const char *assistant; /* the reply; NULL for the turn being answered */
} lyra_chat_turn;

/* The format an architecture's models use when the file has no template
 * (general.architecture: qwen2/qwen3 chatml, gemma* gemma, phi3 phi3, phi2
 * phi2); LYRA_CHAT_PLAIN with *known = 0 for the others. */
lyra_chat_kind lyra_chat_for_arch(const char *arch, int *known);

/* "chatml", ...; "?" for a bad value. */
const char *lyra_chat_kind_name(lyra_chat_kind kind);
/* A name (case-insensitive) to its kind: 0, or -1 for an unknown name. */
int lyra_chat_kind_from_name(const char *name, lyra_chat_kind *out);

/* The format of a tokenizer.chat_template string (tmpl[0..len), NULL or
 * empty: the model has none), by these markers, in this order:
 * <|im_start|> chatml, <|start_header_id|> llama3, [INST] llama2,
 * <|user|> with <|end|> phi3, <start_of_turn> gemma, <|user|> with </s> or
 * eos_token zephyr. None matching: LYRA_CHAT_PLAIN and *known = 0 (the
 * caller warns), else *known = 1. known may be NULL. */
lyra_chat_kind lyra_chat_detect(const char *tmpl, size_t len, int *known);

/* Set up c for kind with the model's BOS/EOS texts (NULL = none; longer than
 * the fields: cut) and, for chatml, the default system prompt found in the
 * model's template tmpl[0..len) (may be NULL). */
void lyra_chat_init(lyra_chat *c, lyra_chat_kind kind, const char *bos, const char *eos,
                    const char *tmpl, size_t len);

/* Set up c to render the Jinja template tmpl[0..len) (name: WHERE of its
 * messages, "tokenizer.chat_template" or the file) with the model's BOS/EOS
 * texts; the stop strings are those of the format lyra_chat_detect finds in
 * it, else the EOS text. LYRA_ERR_INPUT naming the line for a syntax error
 * or an unsupported construct (c is then zeroed), LYRA_ERR_OOM. */
int lyra_chat_init_jinja(lyra_chat *c, const char *tmpl, size_t len, const char *name, const char *bos,
                         const char *eos, lyra_error *err);
/* Free c's Jinja template (if any); c stays usable with its kind. */
void lyra_chat_free(lyra_chat *c);
/* lyra_chat_render of a Jinja template (chat_jinja.c; turns checked). */
int lyra_chat_jinja_render(const lyra_chat *c, const char *system, const lyra_chat_turn *turns, size_t n,
                           char **out, size_t *out_len, lyra_error *err);

/* The prompt of a conversation: system (NULL: none, or the template's
 * default) and turns[0..n), n >= 1, every turn but the last with a reply,
 * the last without. *out is malloc'd and NUL-terminated, *out_len its length
 * (may be NULL). LYRA_ERR_INPUT for a malformed conversation, LYRA_ERR_OOM. */
int lyra_chat_render(const lyra_chat *c, const char *system, const lyra_chat_turn *turns,
                     size_t n, char **out, size_t *out_len, lyra_error *err);

/* How the template writes a reply right after the generation prompt (e.g.
 * llama2: " " + trim(reply); plain: " " + trim(reply); chatml: as is).
 * Not for a Jinja template (LYRA_ERR_INPUT): render the whole conversation. */
int lyra_chat_render_reply(const lyra_chat *c, const char *reply, char **out, size_t *out_len,
                           lyra_error *err);

/* The text that follows turns[n-2]'s reply when turns[n-1] is asked (n >= 2):
 * the end of the reply's turn, the new user message and the generation
 * prompt. So that, with P(k) = lyra_chat_render of the first k turns (the
 * k-th unanswered):
 *   P(n-1) + render_reply(turns[n-2].assistant) + render_next(turns, n) == P(n).
 * Not for a Jinja template (LYRA_ERR_INPUT). */
int lyra_chat_render_next(const lyra_chat *c, const char *system, const lyra_chat_turn *turns,
                          size_t n, char **out, size_t *out_len, lyra_error *err);

/* Strings that end a reply when the model writes them (the end-of-turn
 * token's text first, then the start of a new turn); they are not part of
 * the reply. Fills stops[] (pointers into c or static), returns the count
 * (0 for none; empty BOS/EOS texts are left out). */
int lyra_chat_stops(const lyra_chat *c, const char *stops[LYRA_CHAT_MAX_STOPS]);

#endif
