#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-fuzz (libFuzzer) on the stable toolchain, without a
# sanitizer (`-s none`: Rust code is memory-safe; the targets look for panics, 5xx answers and
# broken round trips).
#
#   scripts/fuzz.sh                      # every target, 30 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh http_request
#
# Targets (fuzz/fuzz_targets/): client_frame (JSON request bodies and WebSocket frames,
# stream cursors) and http_request (fuzzed requests against the real server in-process).
# New interesting inputs go to fuzz/target/corpus/<target> (not committed); the checked-in
# seeds in fuzz/corpus/<target> are only read. A crash leaves its input in
# fuzz/artifacts/<target>/; replay it with `cargo fuzz run -s none <target> <file>`.
# Installs cargo-fuzz into ~/.cargo/bin when missing (about a minute); the first build of the
# targets takes about 14 minutes on 2 cores (the whole server, optimised and instrumented).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds="${FUZZ_SECONDS:-30}"

export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked --quiet "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

echo "== building ${targets[*]}"
cargo fuzz build -s none

failed=()
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${seconds}s"
  mkdir -p "fuzz/target/corpus/$target"
  args=(-max_total_time="$seconds" -print_final_stats=1)
  [ -f "fuzz/$target.dict" ] && args+=(-dict="fuzz/$target.dict")
  log="fuzz/target/fuzz-$target.log"
  rc=0
  cargo fuzz run -s none "$target" "fuzz/target/corpus/$target" "fuzz/corpus/$target" \
    -- "${args[@]}" >"$log" 2>&1 || rc=$?
  # The summary lines (and a crash's panic message and input), not libFuzzer's progress.
  grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|.*panicked at|SUMMARY|Failing input|Test unit written)' "$log" || true
  if [ "$rc" -ne 0 ]; then
    grep -A3 'panicked at' "$log" | head -20 || true
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crashes in ${targets[*]} (${seconds}s each)"
