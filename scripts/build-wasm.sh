#!/bin/sh
# Rebuilds src/store/mark-check.wasm from mark-check.c. The .wasm is committed, so neither users nor
# CI need a compiler; run this after changing the C (needs clang and wasm-ld; Debian: apt-get
# install clang lld; the committed one was built by Debian's clang 14). `--check`: build to a
# temporary file and fail if it differs from the committed one.
set -eu
cd "$(dirname "$0")/../src/store"
out=mark-check.wasm
[ "${1:-}" = "--check" ] && out=$(mktemp --suffix=.wasm)
clang --target=wasm32 -O3 -nostdlib -mbulk-memory -msimd128 \
  -Wall -Wextra -Werror \
  -Wl,--no-entry -Wl,--strip-all \
  -o "$out" mark-check.c
chmod 644 "$out" # data, not a program
if [ "$out" != mark-check.wasm ]; then
  if cmp -s "$out" mark-check.wasm; then echo "mark-check.wasm matches mark-check.c"; rm -f "$out"; exit 0; fi
  echo "mark-check.wasm differs from a build of mark-check.c: run npm run build:wasm" >&2
  rm -f "$out"
  exit 1
fi
echo "built src/store/mark-check.wasm ($(wc -c < mark-check.wasm) bytes)"
