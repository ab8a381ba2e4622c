#!/usr/bin/env bash
# Browser tests for the web client: real `confab` server (target/debug/confab, or $CONFAB_BIN),
# real Chromium from Debian's package at /usr/bin/chromium. Build the server first:
#   cargo build -p confab-server && e2e/run.sh
set -euo pipefail
cd "$(dirname "$0")"

chromium_path="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ ! -x "$chromium_path" ]]; then
  echo "e2e: Chromium not found at $chromium_path." >&2
  echo "     Install it with: apt-get update && apt-get install -y chromium" >&2
  exit 1
fi

bin="${CONFAB_BIN:-../target/debug/confab}"
if [[ ! -x "$bin" ]]; then
  echo "e2e: server binary not found at $bin; run 'cargo build -p confab-server' first (or set CONFAB_BIN)." >&2
  exit 1
fi

if [[ ! -d node_modules ]]; then
  npm ci --no-audit --no-fund
fi

exec node --test tests/
