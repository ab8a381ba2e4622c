#!/usr/bin/env bash
# Runs every test suite of Confab. This is the README's test command; CI calls it too.
#
# Tests start real servers on 127.0.0.1 port 0 with temporary data folders, and use the
# PostgreSQL, Redis and nginx of this machine. The WebSocket
# interoperability test drives the server with Python's `websockets` library, installed here
# into ./.venv (from PyPI) when missing; schemathesis goes into ./.venv-schemathesis the same
# way. The browser tests need Debian's Chromium at /usr/bin/chromium and install their npm
# packages into e2e/node_modules when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! .venv/bin/python -c 'import websockets' 2>/dev/null; then
  echo "== installing the Python interop client into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi
export CONFAB_PYTHON="$PWD/.venv/bin/python"

echo "== Rust: unit and integration tests (SQLite)"
cargo test --workspace --locked

# The same integration suite on the scale-out backends: every test server gets a PostgreSQL
# database and a Redis key prefix of its own (127.0.0.1:5432 and :6379 unless
# CONFAB_TEST_POSTGRES_URL / CONFAB_TEST_REDIS_URL say otherwise), removed afterwards. The
# cluster tests use both in every run. A missing PostgreSQL or Redis fails here.
echo "== Rust: integration tests again on PostgreSQL + Redis"
CONFAB_TEST_DATABASE=postgres cargo test --locked -p confab-server --test it

echo "== API conformance: schemathesis against /api/openapi.json (debug server)"
cargo build --quiet --locked -p confab-server --bin confab
CONFAB_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/confab" ./scripts/schemathesis.sh

echo "== benchmark harness smoke runs (tiny sizes; functional checks only, no timing assertions)"
cargo build --quiet --locked -p confab-server -p confab-bench
bench="${CARGO_TARGET_DIR:-target}/debug/confab-bench"
smoke="$(mktemp -d)"
"$bench" send --senders 2 --receivers 2 --seconds 1 --check
"$bench" send --senders 2 --receivers 2 --seconds 1 --via ws --check
"$bench" steady --rate 100,200 --idle 50 --pairs 4 --seconds 1 --check | tee "$smoke/steady.out"
"$bench" connections --count 200 --settle-ms 200 --check
"$bench" fanout --members 20 --rounds 5 --check
"$bench" history --messages 2000 --conversations 20 --readers 2 --seconds 1 --check
tail -n 1 "$smoke/steady.out" > "$smoke/results.jsonl"
"$bench" plot --input "$smoke/results.jsonl" --output "$smoke/bench-latency.svg"
rm -rf "$smoke"

echo "== browser tests: the web client in Chromium"
cargo build --quiet --locked -p confab-server --bin confab
CONFAB_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/confab" ./e2e/run.sh
