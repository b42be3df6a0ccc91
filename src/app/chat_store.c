/* chat_store.c: the files of `lyra chat --session` (chat_store.h). */
#include "chat_store.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/afile.h"
#include "gen/session.h"

#define SUFFIX ".lyrasession"

int app_session_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > APP_SESSION_NAME_MAX || s[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

/* dir joined with name and suffix, malloc'd. */
static char *join(const char *dir, const char *name, const char *suffix) {
    size_t n = strlen(dir) + strlen(name) + strlen(suffix) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s%s%s", dir, dir[0] ? "/" : "", name, suffix);
    return s;
}

/* mkdir -p path (mode 0700). */
static int make_dirs(const char *path, lyra_error *err) {
    char *p = strdup(path);
    if (!p) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0700) && errno != EEXIST) {
                int rc = lyra_err(err, LYRA_ERR_RUNTIME, p, "cannot create the directory: %s", strerror(errno));
                free(p);
                return rc;
            }
            *s = c;
            if (!c) break;
        }
    }
    free(p);
    return LYRA_OK;
}

/* The sessions directory (malloc'd). */
static int sessions_dir(char **dir, lyra_error *err) {
    const char *x = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    *dir = NULL;
    if (x && x[0] == '/') *dir = join(x, "lyra/sessions", "");
    else if (home && home[0]) *dir = join(home, ".local/state/lyra/sessions", "");
    else return lyra_err(err, LYRA_ERR_INPUT, "--session", "neither XDG_STATE_HOME nor HOME is set: give a PATH");
    return *dir ? LYRA_OK : lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
}

void app_store_free(app_chat_store *st) {
    free(st->name);
    free(st->file);
    free(st->json);
    memset(st, 0, sizeof *st);
}

int app_store_resolve(const char *arg, const char *flag, app_chat_store *st, lyra_error *err) {
    memset(st, 0, sizeof *st);
    int rc = LYRA_OK;
    st->name = strdup(arg);
    if (!st->name) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    if (strchr(arg, '/')) { /* a PATH, as is */
        size_t n = strlen(arg), k = strlen(SUFFIX);
        st->file = strdup(arg);
        char *base = strdup(arg);
        if (base && n > k && !strcmp(arg + n - k, SUFFIX)) base[n - k] = '\0';
        st->json = base ? join("", base, ".json") : NULL;
        free(base);
        if (!st->file || !st->json) rc = lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    } else if (!app_session_name_ok(arg)) {
        rc = lyra_err(err, LYRA_ERR_INPUT, flag,
                      "'%s' is not a session name (1 to %d of A-Z a-z 0-9 . _ -, not starting with '.'; a path "
                      "needs a '/')",
                      arg, APP_SESSION_NAME_MAX);
    } else {
        char *dir = NULL;
        rc = sessions_dir(&dir, err);
        if (!rc) rc = make_dirs(dir, err);
        if (!rc) {
            st->file = join(dir, arg, SUFFIX);
            st->json = join(dir, arg, ".json");
            if (!st->file || !st->json) rc = lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
        }
        free(dir);
    }
    if (rc) app_store_free(st);
    return rc;
}

int app_store_list(FILE *out, lyra_error *err) {
    char *dir = NULL;
    int rc = sessions_dir(&dir, err);
    if (rc) return rc;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(out, "no sessions (%s)\n", dir);
        free(dir);
        return LYRA_OK;
    }
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t k = strlen(e->d_name);
        if (k <= 5 || strcmp(e->d_name + k - 5, ".json")) continue;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(k - 5), e->d_name);
        if (!app_session_name_ok(name)) continue;
        char *path = join(dir, e->d_name, "");
        struct stat sb;
        json_t *j = path ? json_load_file(path, 0, NULL) : NULL;
        json_t *msgs = json_object_get(j, "messages");
        size_t turns = 0;
        for (size_t i = 0; i < json_array_size(msgs); i++)
            turns += !strcmp(json_string_value(json_object_get(json_array_get(msgs, i), "role")) ?
                             json_string_value(json_object_get(json_array_get(msgs, i), "role")) : "", "user");
        char date[32] = "?";
        if (path && !stat(path, &sb)) {
            struct tm tm;
            localtime_r(&sb.st_mtime, &tm);
            strftime(date, sizeof date, "%Y-%m-%d %H:%M", &tm);
        }
        fprintf(out, "  %-24s %4zu turn%s  %s\n", name, turns, turns == 1 ? " " : "s", date);
        n++;
        json_decref(j);
        free(path);
    }
    closedir(d);
    if (!n) fprintf(out, "no sessions (%s)\n", dir);
    free(dir);
    return LYRA_OK;
}

/* Write text[n] to path atomically. */
static int write_atomic(const char *path, const char *text, size_t n, lyra_error *err) {
    lyra_afile f;
    int rc = lyra_afile_open(&f, path, NULL, err);
    if (rc) return rc;
    rc = lyra_afile_write(&f, text, n, err);
    if (rc) {
        lyra_afile_abort(&f);
        return rc;
    }
    return lyra_afile_commit(&f, err);
}

int app_store_save(const app_chat_store *st, lyra_chat_session *cs, const char *model, json_t *settings,
                   lyra_error *err) {
    int rc = lyra_chat_session_save(cs, st->file, NULL, NULL, err);
    if (rc) return rc;
    json_t *j = json_object(), *msgs = json_array();
    char fp[32], date[40];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)lyra_session_fingerprint(cs->m));
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    for (int i = 0; i < cs->n_turns; i++) {
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", cs->user[i]));
        if (cs->reply[i])
            json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "assistant", "content", cs->reply[i]));
    }
    json_object_set_new(j, "format", json_string("lyra-chat-transcript"));
    json_object_set_new(j, "version", json_integer(1));
    json_object_set_new(j, "model", json_string(model));
    json_object_set_new(j, "fingerprint", json_string(fp));
    json_object_set_new(j, "saved", json_string(date));
    json_object_set(j, "settings", settings ? settings : json_null());
    json_object_set_new(j, "system", cs->system ? json_string(cs->system) : json_null());
    json_object_set_new(j, "messages", msgs);
    char *text = json_dumps(j, JSON_INDENT(2));
    json_decref(j);
    if (!text) return lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    rc = write_atomic(st->json, text, strlen(text), err);
    free(text);
    return rc;
}

/* The turns of the transcript at st->json into cs (its KV cache emptied). */
static int rebuild_from(const app_chat_store *st, lyra_chat_session *cs, char **system, lyra_error *err) {
    json_error_t je;
    json_t *j = json_load_file(st->json, 0, &je);
    if (!j) return lyra_err(err, LYRA_ERR_INPUT, st->json, "cannot read the transcript: %s", je.text);
    json_t *msgs = json_object_get(j, "messages"), *sys = json_object_get(j, "system");
    int rc = json_is_array(msgs) && (!sys || json_is_null(sys) || json_is_string(sys))
                 ? LYRA_OK
                 : lyra_err(err, LYRA_ERR_INPUT, st->json, "not a lyra chat transcript");
    for (size_t i = 0; !rc && i < json_array_size(msgs); i++) {
        const char *role = json_string_value(json_object_get(json_array_get(msgs, i), "role"));
        const char *text = json_string_value(json_object_get(json_array_get(msgs, i), "content"));
        const char *want = i % 2 ? "assistant" : "user";
        if (!role || !text || strcmp(role, want))
            rc = lyra_err(err, LYRA_ERR_INPUT, st->json, "messages[%zu]: expected a %s message with content", i, want);
    }
    if (rc) {
        json_decref(j);
        return rc;
    }
    if (cs->n_turns) lyra_chat_session_drop(cs, cs->n_turns);
    lyra_context_truncate(cs->ctx, 0);
    cs->n_kv = 0;
    for (size_t i = 0; !rc && i < json_array_size(msgs); i += 2) {
        rc = lyra_chat_session_ask(cs, json_string_value(json_object_get(json_array_get(msgs, i), "content")), err);
        json_t *a = json_array_get(msgs, i + 1);
        char *r = a ? strdup(json_string_value(json_object_get(a, "content"))) : NULL;
        if (!rc && a && !r) rc = lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
        if (!rc) lyra_chat_session_answer(cs, r);
    }
    if (!rc && json_is_string(sys) && !(*system = strdup(json_string_value(sys))))
        rc = lyra_err(err, LYRA_ERR_OOM, "chat", "out of memory");
    json_decref(j);
    return rc;
}

int app_store_load(const app_chat_store *st, lyra_chat_session *cs, int rebuild, int *found, int *rebuilt,
                   char **system, lyra_error *err) {
    *found = 0;
    *rebuilt = 0;
    *system = NULL;
    struct stat sb;
    int have_file = !stat(st->file, &sb), have_json = !stat(st->json, &sb);
    if (!have_file && !have_json) return LYRA_OK; /* a new session */
    *found = 1;
    int rc;
    if (have_file) {
        void *map;
        size_t len;
        rc = lyra_session_map(st->file, &map, &len, err);
        if (!rc) rc = lyra_chat_session_load(cs, map, len, st->file, system, err);
        lyra_session_unmap(map, len);
        if (rc != LYRA_ERR_INPUT) return rc;
    } else
        rc = lyra_err(err, LYRA_ERR_INPUT, st->file, "missing (the transcript %s is there)", st->json);
    if (!rebuild) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return lyra_err(err, LYRA_ERR_INPUT, "chat", "%s; --rebuild evaluates the transcript %s again%s", why,
                        st->json, have_json ? "" : " (there is none)");
    }
    if (!have_json) return rc;
    *rebuilt = 1;
    return rebuild_from(st, cs, system, err);
}
