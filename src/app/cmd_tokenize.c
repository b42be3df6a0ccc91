/* cmd_tokenize.c: `lyra tokenize`: the token ids of a text, separated by
 * single spaces, then a newline. Only the GGUF's tokenizer is loaded (not the
 * weights), so vocabulary-only GGUF files work too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "config/model_ref.h"
#include "format/gguf.h"
#include "format/hf_model.h"
#include "token/tokenizer.h"

const char cmd_tokenize_usage[] =
    "usage: lyra tokenize -m MODEL [--no-bos] [--parse-special] (TEXT | -f FILE)\n"
    "\n"
    "Print the token ids of TEXT (or of FILE's bytes, taken as they are; `-f -`\n"
    "reads stdin) separated by single spaces, then a newline. MODEL may be a\n"
    "full model or a vocabulary-only GGUF. Put -- before a TEXT that starts\n"
    "with '-'.\n"
    "\n"
    "  -m, --model MODEL   GGUF file with the tokenizer, a directory holding one,\n"
    "                      or org/name[:TAG] in the Hugging Face cache (required)\n"
    "  -f, --file FILE     read the text from FILE (- = stdin)\n"
    "  --no-bos            do not add BOS (default: as the model's metadata says)\n"
    "  --parse-special     match special tokens (<s>, ...) written in the text\n"
    "  -q, -v              quieter / more verbose stderr\n";

/* TEXT: one at most. */
static int take_text(app_args *a, const char *arg, void *dst, lyra_error *err) {
    (void)a;
    const char **text = dst;
    if (*text) return lyra_err(err, LYRA_ERR_INPUT, arg, "only one TEXT may be given (quote it)");
    *text = arg;
    return LYRA_OK;
}

int cmd_tokenize(int argc, char **argv, lyra_error *err) {
    const char *model = NULL, *file = NULL, *text = NULL;
    int no_bos = 0, parse_special = 0;
    const app_opt opts[] = {
        APP_STR("-m", "--model", &model),
        APP_STR("-f", "--file", &file),
        APP_SWITCH("--no-bos", &no_bos),
        APP_SWITCH("--parse-special", &parse_special),
        APP_POSITIONAL(take_text, &text),
        APP_OPT_END_,
    };
    int rc = args_parse(argc, argv, NULL, opts, 0, NULL, NULL, err);
    if (rc) return rc;
    if (!model) return lyra_err(err, LYRA_ERR_INPUT, "-m", "required: the model file");
    if (text && file) return lyra_err(err, LYRA_ERR_INPUT, "-f", "give TEXT or -f FILE, not both");
    if (!text && !file) return lyra_err(err, LYRA_ERR_INPUT, "tokenize", "give TEXT or -f FILE");

    char *buf = NULL;
    size_t len = 0;
    if (file) {
        rc = app_read_file(file, &buf, &len, err);
        if (rc) return rc;
    } else {
        len = strlen(text);
    }
    lyra_gguf *g = NULL;
    lyra_tokenizer *tk = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    char *path = NULL;
    rc = lyra_model_ref_resolve(model, "", &path, err);
    if (!rc) rc = lyra_hf_open_path(path, LYRA_HF_DTYPE_AUTO, &g, err); /* a GGUF or a folder */
    if (!rc) rc = lyra_tokenizer_load(g, &tk, err);
    if (!rc) {
        int add_bos = no_bos ? 0 : lyra_tok_add_bos(tk);
        rc = lyra_tok_encode(tk, file ? buf : text, len, add_bos, parse_special, &ids, &n, err);
    }
    if (!rc) {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", (int)ids[i]);
        putchar('\n');
    }
    free(ids);
    lyra_tokenizer_free(tk);
    lyra_gguf_close(g);
    free(path);
    free(buf);
    return rc;
}
