#!/usr/bin/env bash
# Acknowledged sends per second with the durable default (synchronous=FULL) beside
# synchronous=NORMAL, at 1, 16 and 64 concurrent senders (release build), each against Confab
# and the ceiling server. Prints the tables and appends the JSON lines to bench-results.jsonl.
#
#   ./scripts/bench-send.sh [seconds-per-run]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
cargo build --release --locked -p confab-server -p confab-bench
bench="${CARGO_TARGET_DIR:-target}/release/confab-bench"
server="${CARGO_TARGET_DIR:-target}/release/confab"
scratch="$(mktemp)"
trap 'rm -f "$scratch"' EXIT
for sync in full normal; do
  for senders in 1 16 64; do
    "$bench" send --sync "$sync" --senders "$senders" --server-bin "$server" --check \
      --receivers "$(( senders < 16 ? senders : 16 ))" --seconds "$seconds" | tee "$scratch"
    tail -n 1 "$scratch" >> bench-results.jsonl
  done
done
