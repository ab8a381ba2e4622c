#!/usr/bin/env bash
# Dependency audit: cargo-deny's advisories, bans, licenses and sources checks (deny.toml),
# offline, against the RustSec advisory database snapshot in shared/advisory-db.
#
#   scripts/audit.sh                 # all checks
#   scripts/audit.sh advisories      # only some of: advisories bans licenses sources
#
# CONFAB_ADVISORY_DB: the snapshot (default: ../shared/advisory-db beside the repository). It is
# copied into a fresh git repository in a temporary directory, because cargo-deny reads the
# database's commit date from git and cannot fetch it here. Installs cargo-deny into
# ~/.cargo/bin when missing (about 4 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2
# cargo-deny's directory name for the default RustSec URL: a snapshot placed under this name
# is used as the official database.
DB_DIR_NAME=advisory-db-3157b0e258782691

snapshot="${CONFAB_ADVISORY_DB:-../shared/advisory-db}"
if [ ! -f "$snapshot/SNAPSHOT.txt" ] || [ ! -d "$snapshot/crates" ]; then
  echo "audit: no RustSec advisory database snapshot at '$snapshot'" >&2
  echo "audit: (expected SNAPSHOT.txt and crates/ there; set CONFAB_ADVISORY_DB to its path)" >&2
  exit 1
fi
echo "== advisory database: $(head -c 200 "$snapshot/SNAPSHOT.txt" | head -1)"

export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
  echo "== installing cargo-deny $CARGO_DENY_VERSION"
  cargo install --locked --quiet "cargo-deny@$CARGO_DENY_VERSION"
fi

db_root="$(mktemp -d "${TMPDIR:-/tmp}/confab-advisory-db.XXXXXX")"
trap 'rm -rf "$db_root"' EXIT
cp -R "$snapshot" "$db_root/$DB_DIR_NAME"
chmod -R u+w "$db_root/$DB_DIR_NAME"
(
  cd "$db_root/$DB_DIR_NAME"
  rm -rf .git
  git init --quiet
  git add --all
  git -c user.name=confab-audit -c user.email=audit@confab.invalid \
    commit --quiet --no-gpg-sign --message "advisory database snapshot"
)

# cargo-deny reads `cargo metadata` for every platform, offline: fetch the crates a build on
# this platform never downloads (Windows and wasm dependencies of dependencies) first.
echo "== cargo fetch (every platform's crates, for the metadata)"
cargo fetch --locked --quiet

echo "== cargo deny check ${*:-all}"
CONFAB_DENY_DB="$db_root" cargo deny --offline check --hide-inclusion-graph "$@"
