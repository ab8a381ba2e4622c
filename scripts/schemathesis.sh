#!/usr/bin/env bash
# Property-based tests of the HTTP API against its own OpenAPI document (schemathesis 4).
#
#   scripts/schemathesis.sh                          # the debug build, target/debug/confab
#   CONFAB_BIN=target/release/confab scripts/schemathesis.sh
#   SCHEMATHESIS_MAX_EXAMPLES=100 scripts/schemathesis.sh   # a longer run
#   scripts/schemathesis.sh --seed 123               # extra arguments go to `schemathesis run`
#
# Starts the server on a free port with a temporary data folder, registers a user for a bearer
# token, and runs every phase (examples, coverage, fuzzing, stateful) with every check over
# every operation: no 5xx, and every answer (status, content type, headers, body) as the
# document says. Installs schemathesis into ./.venv-schemathesis (from PyPI) when missing.
# The settings that are not flags (and why) are in scripts/schemathesis.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

SCHEMATHESIS_VERSION=4.32.5
venv="$root/.venv-schemathesis"
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  echo "== installing schemathesis $SCHEMATHESIS_VERSION into .venv-schemathesis"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

bin="${CONFAB_BIN:-$root/target/debug/confab}"
if [ ! -x "$bin" ]; then
  echo "schemathesis: no server binary at $bin (cargo build -p confab-server --bin confab)" >&2
  exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/confab-schemathesis.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# JSON logs: the address is read from the "confab listening" line. SQLite sync `normal`:
# durability is not under test here.
"$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" --sqlite-sync normal \
  --log-format json >"$work/server.log" 2>&1 &
server_pid=$!
addr=""
for _ in $(seq 1 100); do
  addr="$(sed -n 's/.*"message":"confab listening","addr":"\([^"]*\)".*/\1/p' "$work/server.log" | head -1)"
  [ -n "$addr" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$addr" ]; then
  echo "schemathesis: the server did not start; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
base="http://$addr"
echo "== server at $base ($bin)"

# A user of its own for each run below, so signing one out does not end the other's session.
token_for() {
  curl -sS --fail-with-body -X POST -H 'Content-Type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"schemathesis password\"}" \
    "$base/api/auth/register" |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

examples="${SCHEMATHESIS_MAX_EXAMPLES:-15}"
st=("$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml")
common=(
  --checks all
  --max-examples "$examples"
  --request-timeout 10
  --no-color
  # Failures are kept in the temporary folder, not in a database under the repository.
  --generation-database none
)
status=0

# Signing out (`logout`) and revoking a session by id (`revoke_session`: schemathesis finds the
# run's own session id in `GET /api/sessions`) end the session the run authenticates with, and
# every later request would answer 401. Each gets a run and a user of its own.
ending=(logout revoke_session)
exclude=()
for op in "${ending[@]}"; do exclude+=(--exclude-operation-id "$op"); done

echo "== schemathesis: every operation but ${ending[*]} (max $examples examples each)"
token="$(token_for schemathesis)"
"${st[@]}" run "$base/api/openapi.json" "${common[@]}" \
  -H "Authorization: Bearer $token" "${exclude[@]}" "$@" || status=$?

for op in "${ending[@]}"; do
  echo "== schemathesis: $op"
  token="$(token_for "schemathesis_$op")"
  "${st[@]}" run "$base/api/openapi.json" "${common[@]}" \
    -H "Authorization: Bearer $token" --include-operation-id "$op" "$@" || status=$?
done

if grep -q '"level":"ERROR"' "$work/server.log"; then
  echo "schemathesis: the server logged errors:" >&2
  grep '"level":"ERROR"' "$work/server.log" | head -20 >&2
  status=1
fi
exit "$status"
