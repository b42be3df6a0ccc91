# test_cli_hfdir.sh: Hugging Face directories on the command line, with
# tiny fake snapshots (the weights are not read here): `lyra tokenize -m DIR`
# reads DIR/tokenizer.json (ids as the tokenizers library gives them, see
# tests/data/tokenizers/SOURCES.md), missing files are named, a snapshot in
# a fake HF cache is found by org/name and org/name@REV, and `lyra config
# show` lists generation_config.json's values with their "model:" source,
# below a config file's and the flags.
source "$(dirname "$0")/lib.sh"
D="$SRC/tests/data/tokenizers/llama3-trained"
check_rc "tokenize -m DIR" 0 "$LYRA" tokenize -m "$D" --parse-special "Hello world<|eot_id|>"
check_eq "tokenize -m DIR ids (tokenizers' ids)" "$(cat "$T/out")" "0 321 276 81 622 310 2"
check_rc "tokenize --no-bos" 0 "$LYRA" tokenize -m "$D" --no-bos "Hello world"
check_eq "no bos" "$(cat "$T/out")" "321 276 81 622 310"

# a snapshot: config.json + tokenizer.json + model.safetensors (fake)
S="$T/snap"
mkdir -p "$S"
echo '{"model_type": "llama"}' > "$S/config.json"
printf 'x' > "$S/model.safetensors"
check_rc "no tokenizer.json" 2 "$LYRA" tokenize -m "$S" "x"
check_grep "no tokenizer.json named" "tokenizer.json not found in .*snap; lyra needs it" "$T/err"
cp "$D/tokenizer.json" "$D/tokenizer_config.json" "$S/"
check_rc "tokenize -m SNAPSHOT" 0 "$LYRA" tokenize -m "$S" "Hello world"
check_eq "snapshot ids" "$(cat "$T/out")" "0 321 276 81 622 310"
printf 'GGUF' > "$S/model-Q8_0.gguf"
check_rc "GGUF beside a snapshot" 2 "$LYRA" tokenize -m "$S" "x"
check_grep "both named" "both a Hugging Face snapshot .* and 1 GGUF model file \(model-Q8_0.gguf\).*:safetensors" "$T/err"
check_rc "DIR:safetensors" 0 "$LYRA" tokenize -m "$S:safetensors" "Hello world"
rm "$S/model-Q8_0.gguf"

# the HF cache: refs/main and a branch
H="$T/hub/models--org--tiny"
mkdir -p "$H/refs" "$H/snapshots/aaa" "$H/snapshots/bbb"
echo aaa > "$H/refs/main"
echo bbb > "$H/refs/dev"
cp "$S"/* "$H/snapshots/aaa/"
cp "$S"/* "$H/snapshots/bbb/"
echo '{"temperature": 0.6, "top_p": 0.9, "do_sample": true, "eos_token_id": [1, 2]}' > "$H/snapshots/aaa/generation_config.json"
echo '{"temperature": 0.3, "max_new_tokens": 77}' > "$H/snapshots/bbb/generation_config.json"
export HF_HUB_CACHE="$T/hub"
check_rc "tokenize org/name" 0 "$LYRA" tokenize -m org/tiny "Hello world"
check_eq "org/name ids" "$(cat "$T/out")" "0 321 276 81 622 310"
check_rc "config show -m org/name" 0 "$LYRA" config show --no-config -m org/tiny
check_grep "temperature from generation_config" "temperature +0\.6 +model:.*snapshots/aaa/generation_config.json" "$T/out"
check_grep "top_p from generation_config" "top_p +0\.9 +model:.*generation_config.json" "$T/out"
check_grep "top_k: transformers' default" "top_k +50 +default \(transformers\)" "$T/out"
check_rc "config show -m org/name@dev" 0 "$LYRA" config show --no-config -m org/tiny@dev
check_grep "revision dev" "temperature +0\.3 +model:.*snapshots/bbb/generation_config.json" "$T/out"
check_grep "max_new_tokens from generation_config" "max_new_tokens +77 +model:" "$T/out"
check_rc "a flag beats generation_config" 0 "$LYRA" config show --no-config -m org/tiny --temp 0.2
check_grep "flag wins" "temperature +0\.2 +flag:--temp" "$T/out"
echo '{"pipeline_kwargs": {"temperature": 0.5}}' > "$T/cfg.json"
check_rc "a config file beats generation_config" 0 "$LYRA" config show --model-config "$T/cfg.json" -m org/tiny
check_grep "file wins" "temperature +0\.5 +file:" "$T/out"
check_grep "top_p still from the model" "top_p +0\.9 +model:" "$T/out"
check_rc "missing revision" 2 "$LYRA" tokenize -m org/tiny@v9 "x"
check_grep "missing revision named" "revision v9 not found" "$T/err"
# the revision key: --revision, a config file's "revision" (the seed's
# transformers spelling), org/name@REV agreeing with it or not
check_rc "--revision dev" 0 "$LYRA" config show --no-config -m org/tiny --revision dev
check_grep "--revision dev: its snapshot" "temperature +0\.3 +model:.*snapshots/bbb/generation_config.json" "$T/out"
check_grep "--revision dev: shown" 'revision +"dev" +flag:--revision' "$T/out"
echo '{"model_id": "org/tiny", "revision": "dev", "torch_dtype": "float32"}' > "$T/rev.json"
check_rc "a file's revision" 0 "$LYRA" config show --model-config "$T/rev.json"
check_grep "a file's revision: its snapshot" "max_new_tokens +77 +model:.*snapshots/bbb/" "$T/out"
check_rc "--revision main over the file" 0 "$LYRA" config show --model-config "$T/rev.json" --revision main
check_grep "--revision main: refs/main's snapshot" "temperature +0\.6 +model:.*snapshots/aaa/" "$T/out"
check_rc "org/name@REV as the key says" 0 "$LYRA" config show --no-config -m org/tiny@dev --revision dev
check_rc "org/name@REV against the key" 2 "$LYRA" generate --model-config "$T/rev.json" -m org/tiny@aaa -n 1
check_grep "against the key: both named" "^lyra: error: org/tiny@aaa names revision aaa but revision in .*/rev.json says dev: keep one$" "$T/err"
check_rc "--revision v9" 2 "$LYRA" generate --no-config -m org/tiny --revision v9 -n 1
check_grep "--revision v9: not found" "revision v9 not found" "$T/err"
finish
