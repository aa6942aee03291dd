#!/bin/sh
# make install's layout: cmake --install into a temporary PREFIX, then a program
# that includes grok.h is compiled and linked through the installed grok.pc, and
# the installed grok answers --version and lists only commands that run.
# usage: test_install.sh BUILD_DIR
set -eu
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
for f in bin/grok include/grok.h lib/libgrok.a lib/pkgconfig/grok.pc; do
  [ -f "$tmp/prefix/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
cat > "$tmp/t.c" <<'C'
#include <grok.h>
#include <stdio.h>
#include <string.h>
int main(void) {
    gk_sampler_params p = gk_sampler_default_params();
    printf("%s %s %d\n", GK_VERSION, gk_kernels_name(), p.top_k);
    return strlen(gk_kernels_name()) ? 0 : 1;
}
C
flags=$(PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig" pkg-config --cflags --libs grok)
${CC:-cc} "$tmp/t.c" -o "$tmp/t" $flags
"$tmp/t"
"$tmp/prefix/bin/grok" --version | grep -q '^grok ' || { echo "FAIL: --version"; exit 1; }
# every command --help lists must exist (and answer its own --help)
n=0
for cmd in $("$tmp/prefix/bin/grok" --help | awk '/^  [a-z]/ {print $1}'); do
  "$tmp/prefix/bin/grok" "$cmd" --help >/dev/null || { echo "FAIL: grok $cmd --help"; exit 1; }
  n=$((n + 1))
done
[ "$n" -gt 3 ] || { echo "FAIL: grok --help lists $n commands"; exit 1; }
echo "install: ok ($n commands)"
