#!/bin/sh
# Runs node --test on the given files, or skips (77) without Node 20+ or the npm
# peers (installed by scripts/setup-deps.sh into tests/serve/node_modules).
dir=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null 2>&1; then echo "skip: node not found"; exit 77; fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then echo "skip: node $major < 20"; exit 77; fi
if [ ! -f "$dir/node_modules/openai/package.json" ]; then
  echo "skip: npm peers missing (run scripts/setup-deps.sh)"; exit 77
fi
exec node --test --test-concurrency=1 "$@"
