/* model_ref.h: what `-m MODEL` and a config's `model_id` may name, resolved
 * to the path of one GGUF file or of a Hugging Face snapshot directory
 * (lyra_model_open's argument):
 *   - a GGUF file (any name; a split model by its first part,
 *     NAME-00001-of-0000N.gguf: naming a later part is an error that names
 *     the first);
 *   - a directory holding exactly one model GGUF (a split model counts once,
 *     by its first part; mmproj-* projector files are not models); DIR:TAG
 *     picks one by TAG as below; a Hugging Face cache repo directory
 *     (models--org--name) is looked up as org/name;
 *   - org/name[:TAG] (also hf.co/org/name[:TAG]): a model in the local
 *     Hugging Face hub cache, never downloaded: the cache is $HF_HUB_CACHE,
 *     else $HF_HOME/hub, else ~/.cache/huggingface/hub; the repo is
 *     models--org--name (case-insensitively if the exact name is absent),
 *     the revision snapshots/REV with REV from refs/main, else the only
 *     snapshot. The files are searched two directory levels deep (split
 *     models often sit in a folder per quantization).
 * Hugging Face snapshots (safetensors): a directory (given, or the cache's
 * snapshot) holding config.json and no GGUF file resolves to the directory
 * itself; it must hold tokenizer.json and model.safetensors (or
 * model.safetensors.index.json, or some *.safetensors), else an error names
 * the missing file ("tokenizer.json not found in SNAPSHOT; lyra needs it").
 * A directory with tokenizer.json only (no config.json, no GGUF) resolves to
 * itself too (enough for `lyra tokenize`). When a snapshot with safetensors
 * weights also holds GGUF files, nothing is guessed: the error names both,
 * and :safetensors picks the snapshot, any other :TAG a GGUF file (a GGUF
 * repo whose config.json comes without safetensors picks its GGUF as before).
 * Revision (org/name@REV[:TAG], or lyra_model_ref_resolve_rev, which the
 * config's revision key feeds): a branch or tag whose refs/REV names the
 * snapshot, or a commit (snapshots/REV); default refs/main, else the only
 * snapshot. Both, naming different revisions, is an error naming both. A
 * local file or a directory that is not a cache repo (models--org--name)
 * has no revisions: the revision is not used there (as transformers does).
 * TAG picks the file whose path (below the snapshot or directory) contains
 * TAG case-insensitively, as llama.cpp's -hf and Ollama's hf.co tags do
 * (`:Q4_K_M`, `:q8_0`); when several contain it, the one where TAG stands
 * alone (not followed by a letter, digit or '_', so Q4_0 is not Q4_0_4_4
 * and Q4_K is neither Q4_K_M nor Q4_K_S) wins if it is the only such one.
 * The returned path keeps the snapshot's symlink (not the blob it points
 * to), so the other parts of a split model are found beside it.
 *
 * Several candidates without a TAG, or none, or anything else missing, is
 * LYRA_ERR_INPUT with one line naming what was found and every place looked
 * in (and which variable chose the cache). */
#ifndef LYRA_MODEL_REF_H
#define LYRA_MODEL_REF_H

#include <stddef.h>

#include "core/err.h"

/* Resolve ref; where names its origin in messages ("-m", "model_id", a
 * file:json path). *path is malloc'd on success (NULL on failure). */
int lyra_model_ref_resolve(const char *ref, const char *where, char **path, lyra_error *err);
/* The same at a revision (NULL or "": refs/main, else the only snapshot). */
int lyra_model_ref_resolve_rev(const char *ref, const char *revision, const char *where, char **path,
                               lyra_error *err);

/* The Hugging Face hub cache directory lookups use, into buf[cap], and the
 * variable that chose it ("HF_HUB_CACHE", "HF_HOME" or "HOME") into
 * *source. Returns 0, or -1 when none can be named (HOME unset too, or the
 * path does not fit). */
int lyra_model_ref_hf_cache(char *buf, size_t cap, const char **source);

#endif
