#!/usr/bin/env bash
# Runs every test suite of Confab. This is the README's test command; CI calls it too.
#
#   ./scripts/test.sh            all suites
#
# Tests start real servers on 127.0.0.1 port 0 with temporary data folders.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Rust: unit and integration tests (SQLite)"
cargo test --workspace --locked
