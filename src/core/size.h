/* size.h: memory sizes as people write them, the ONE parser used by
 * --max-memory, --reserve, configs (max_memory) and LYRA_SIM_GPUS, and the
 * formatter used by map lines, plan tables and fallback messages (and, in
 * size.c, lyra.h's lyra_format_bytes). In core: the device (LYRA_SIM_GPUS),
 * the plan, the config and the front ends all read sizes.
 *
 * Grammar (surrounding spaces/tabs ignored, spaces allowed before the unit):
 *   size   = digits [ "." digits ] unit
 *   unit   = "B"                          bytes
 *          | "KB" | "MB" | "GB" | "TB"    powers of 10 (10^3 .. 10^12), as accelerate
 *          | "KiB" | "MiB" | "GiB" | "TiB" powers of 2 (2^10 .. 2^40)
 * Letters are case-insensitive ("6gB", "6GIB" are fine) EXCEPT the final b:
 * a lowercase b means bits, which lyra refuses rather than guessing (accelerate
 * silently reads "6Gb" as 6 gigabits = 750 MB): "6Gb", "6gb", "6kb", "6Gib" and
 * also a lone "512b" are errors with the hint "bits? write 6GB or 6GiB".
 * A number without a unit ("6") is an error (in a string; a JSON integer is a
 * byte count). A bare prefix ("6G") is an error (ambiguous: GB or GiB?).
 * Fractions are exact: value = floor(number * unit), computed with integers
 * ("0.1GB" = 100000000, "1.5GiB" = 1610612736, "1.5B" = 1). Results above
 * UINT64_MAX are errors. Every error is LYRA_ERR_INPUT with the message
 * "WHERE: bad size \"VALUE\": WHY". */
#ifndef LYRA_CORE_SIZE_H
#define LYRA_CORE_SIZE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Parse the NUL-terminated string s. where names the source for messages
 * ("--max-memory", "LYRA_SIM_GPUS", "config.json: max_memory.cpu"). */
int lyra_size_parse(const char *s, const char *where, uint64_t *out, lyra_error *err);
/* The same for len bytes of s (need not be NUL-terminated; a NUL inside is an
 * error). */
int lyra_size_parse_n(const char *s, size_t len, const char *where, uint64_t *out,
                      lyra_error *err);
/* A JSON value: a non-negative integer is a byte count, a string is parsed as
 * above; anything else (real, negative, bool, null, ...) is an error. */
int lyra_size_from_json(const json_t *v, const char *where, uint64_t *out, lyra_error *err);

/* n bytes for people: "512 B" below 1 KiB, else one decimal in the largest
 * binary unit giving a value >= 1 ("1.5 KiB", "1.1 GiB", up to EiB), rounded
 * to nearest (half up) with integers; a value that rounds to 1024.0 moves to
 * the next unit ("1.0 GiB", never "1024.0 MiB"). Returns snprintf's count. */
size_t lyra_size_format(uint64_t n, char *buf, size_t cap);

/* Quote len bytes of s for a message: printable ASCII as is, '"' and '\\'
 * escaped, other bytes as \xNN, cut with "..." beyond 48 bytes. Returns buf. */
const char *lyra_size_quote(const char *s, size_t len, char *buf, size_t cap);

#endif
