#!/usr/bin/env bash
# test_cli_serve.sh: `lyra serve` with the standard library's HTTP client
# (tests/serve/smoke.py): endpoints, streaming, errors, the key, a client
# that disconnects, concurrent answers equal to their answers alone, and a
# graceful exit 0 on SIGTERM / SIGINT. The real OpenAI and LangChain clients,
# the load test and the browser test are tests/serve/*.py (scripts/test.sh's
# serve stage).
. "$(dirname "$0")/lib.sh"
shared_path M models/stories260K.gguf
command -v python3 >/dev/null || skip "python3 not found"
if python3 "$SRC/tests/serve/smoke.py" "$LYRA" "$M"; then ok; else bad "smoke.py failed"; fi
finish
