/* chat_store.h: where `lyra chat --session NAME|PATH` keeps a session
 * (docs/cli.md, docs/sessions.md): NAME.lyrasession (the KV cache and the
 * conversation, src/gen/session.h) and NAME.json (the transcript: messages,
 * the model's path and fingerprint, the settings) under
 * $XDG_STATE_HOME/lyra/sessions (default ~/.local/state/lyra/sessions), or
 * PATH and PATH.json (a ".lyrasession" suffix replaced) for an argument
 * holding a '/'. */
#ifndef LYRA_APP_CHAT_STORE_H
#define LYRA_APP_CHAT_STORE_H

#include <jansson.h>
#include <stdio.h>

#include "gen/chat_session.h"
#include "lyra.h"

#define APP_SESSION_NAME_MAX 64

typedef struct app_chat_store {
    char *name; /* as given (NAME or PATH) */
    char *file; /* the session file */
    char *json; /* the transcript */
} app_chat_store;

/* 1 when s is a valid session NAME: 1..64 of [A-Za-z0-9._-], no leading dot. */
int app_session_name_ok(const char *s);
/* Resolve NAME|PATH (an invalid NAME is LYRA_ERR_INPUT naming flag); the
 * sessions directory is created (mode 0700) for a NAME. */
int app_store_resolve(const char *arg, const char *flag, app_chat_store *st, lyra_error *err);
void app_store_free(app_chat_store *st);
/* List the sessions in the directory: name, turns, date of the last save. */
int app_store_list(FILE *out, lyra_error *err);
/* Save cs's session and transcript (each atomically); settings (borrowed)
 * goes into the transcript. */
int app_store_save(const app_chat_store *st, lyra_chat_session *cs, const char *model, json_t *settings,
                   lyra_error *err);
/* Restore cs from st (*found 0: no session there yet, nothing changed).
 * A session that does not load (another model, geometry, a damaged file)
 * is an error suggesting --rebuild; with rebuild its turns come from the
 * transcript instead (*rebuilt 1) and are evaluated again at the next
 * message. *system (malloc'd, NULL: none) is the session's system prompt. */
int app_store_load(const app_chat_store *st, lyra_chat_session *cs, int rebuild, int *found, int *rebuilt,
                   char **system, lyra_error *err);

#endif
