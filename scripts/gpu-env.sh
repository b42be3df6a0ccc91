# gpu-env.sh: sourced (from the checkout's root) by scripts/gpu-check.sh and
# scripts/gpu-ab.sh on a lent GPU machine: lyra's libraries and the gguf
# wheel from the carried .deps (scripts/gpu-prep.sh), used only when the
# machine lacks them.
if ! pkg-config --exists jansson libpcre2-8 libmicrohttpd libutf8proc 2>/dev/null; then
    # The carried .debs, unpacked aside; a shared library joins the loader's
    # path (through /tmp/lyra-deps/lib) only when the system has no library
    # of that soname, so the image's own GnuTLS, libffi, ... stay in use.
    D=/tmp/lyra-deps; mkdir -p $D/lib
    for f in .deps/*.deb; do dpkg -x "$f" $D; done
    # lyra links libmicrohttpd dynamically: its GnuTLS (Requires.private)
    # needs no .pc file or headers here
    sed -i '/^Requires.private/d' $D/usr/lib/x86_64-linux-gnu/pkgconfig/libmicrohttpd.pc
    for so in $D/usr/lib/x86_64-linux-gnu/lib*.so.* $D/lib/x86_64-linux-gnu/lib*.so.*; do
        [ -e "$so" ] || continue
        n=$(basename "$so")
        ldconfig -p | grep -q "^[[:space:]]$n " || ln -sf "$so" $D/lib/"$n"
    done
    command -v pkg-config >/dev/null || { ln -sf $D/usr/bin/pkgconf $D/lib/pkg-config; export PATH=$D/lib:$PATH; }
    export PKG_CONFIG_PATH=$D/usr/lib/x86_64-linux-gnu/pkgconfig:$D/usr/share/pkgconfig
    export PKG_CONFIG_SYSROOT_DIR=$D PKG_CONFIG_ALLOW_SYSTEM_LIBS=1 PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1
    export CPATH=$D/usr/include${CPATH:+:$CPATH}
    export LD_LIBRARY_PATH=$D/lib:${LD_LIBRARY_PATH:-}
    export LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu
fi
if ! python3 -c 'import gguf' 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/lyra-site .deps/gguf-*.whl && export PYTHONPATH=/tmp/lyra-site
fi
