#!/usr/bin/env bash
# The `send` scenario on each backend, side by side (release build): SQLite (one node, the
# harness starts it), PostgreSQL + Redis with one node, and PostgreSQL + Redis with two nodes
# where senders post to node A and every receiver is connected to node B, so each delivery
# crosses nodes through Redis. Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and Redis on
# 127.0.0.1:6379. Appends the JSON lines to bench-results.jsonl.
#
#   ./scripts/bench-cluster.sh [seconds-per-run] [senders]
set -euo pipefail
export PGOPTIONS="--client-min-messages=warning"
cd "$(dirname "$0")/.."
seconds="${1:-10}"
senders="${2:-64}"
pg="${CONFAB_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
redis="${CONFAB_BENCH_REDIS:-redis://127.0.0.1:6379/}"
cargo build --release --locked -p confab-server -p confab-bench
target="${CARGO_TARGET_DIR:-target}/release"
work="$(mktemp -d)"
nodes=()
cleanup() {
  for pid in "${nodes[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS confab_bench WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# A node on PostgreSQL + Redis without rate limits (one machine plays thousands of people).
node() {
  local port="$1"
  CONFAB_LOG=warn "$target/confab" serve --listen "127.0.0.1:$port" --data-dir "$work/node-$port" \
    --database-url "$pg/confab_bench" --redis-url "$redis" --redis-prefix "confab-bench-$$" \
    --limit-auth off --limit-send off --limit-typing off --limit-connect off --limit-read off \
    >"$work/node-$port.log" 2>&1 &
  nodes+=("$!")
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "node on port $port did not start:" >&2
  cat "$work/node-$port.log" >&2
  exit 1
}

fresh_database() {
  for pid in "${nodes[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  nodes=()
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS confab_bench WITH (FORCE)" >/dev/null
  psql "$pg/postgres" -qc "CREATE DATABASE confab_bench" >/dev/null
}

run() {
  "$target/confab-bench" send --senders "$senders" --receivers 16 --seconds "$seconds" --no-ceiling "$@" \
    | tee "$work/out"
  tail -n 1 "$work/out" >> bench-results.jsonl
}

echo "== SQLite, one node"
run

echo "== PostgreSQL + Redis, one node"
fresh_database
node 18081
run --url http://127.0.0.1:18081

echo "== PostgreSQL + Redis, two nodes (send to A, receive on B)"
fresh_database
node 18081
node 18082
run --url http://127.0.0.1:18081 --receive-url http://127.0.0.1:18082
