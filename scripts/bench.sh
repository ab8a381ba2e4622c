#!/usr/bin/env bash
# The headline figures of docs/benchmarks.md: every scenario at its target size, each run
# against Confab (SQLite, durable default) and against the ceiling server in the same run,
# with release builds. Writes one JSON line per scenario to docs/bench-results.jsonl (or
# $BENCH_OUT) and redraws docs/bench-latency.svg from the steady sweep.
#
#   ./scripts/bench.sh [seconds-per-run]
#
# About 4 minutes on 2 cores, after the build. 19,000 connections, not 20,000: the machine's
# open-file hard limit is 20,000 per process, and the server needs a few for itself.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
out="${BENCH_OUT:-docs/bench-results.jsonl}"
cargo build --release --locked -p confab-server -p confab-bench
bench="${CARGO_TARGET_DIR:-target}/release/confab-bench"
# The server just built, whatever CONFAB_BIN says; --check makes an incomplete run (a send
# lost, a socket refused) fail instead of landing in the results.
server="${CARGO_TARGET_DIR:-target}/release/confab"
# The results land in $out only when every scenario completed.
scratch="$(mktemp)"
results="$(mktemp)"
trap 'rm -f "$scratch" "$results"' EXIT
run() {
  "$bench" "$@" --server-bin "$server" --check | tee "$scratch"
  tail -n 1 "$scratch" >> "$results"
}
run send --senders 64 --receivers 16 --seconds "$seconds"
run steady --rate 500,1000,2000,4000,8000 --idle 10000 --pairs 64 --seconds "$seconds"
run connections --count 19000
run fanout --members 1000 --rounds 100
run history --messages 1000000 --conversations 1000 --readers 4 --seconds "$seconds"
cp "$results" "$out"
"$bench" plot --input "$out" --output docs/bench-latency.svg
