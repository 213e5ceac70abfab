#!/usr/bin/env bash
# Installs the pinned real PostgreSQL drivers used by tests/drivers.rs:
#   psycopg 3 + asyncpg into a Python venv, node-postgres (`pg`) into a node_modules tree.
#
# Usage: bash tests/drivers/install.sh [CACHE_DIR]   (default: ${CARGO_TARGET_DIR:-target}/drivers)
# Result: CACHE_DIR/venv/bin/python and CACHE_DIR/node/node_modules.
# Idempotent: a stamp holding a hash of the pin files and runtime versions makes a repeat run a
# no-op. A missing runtime is installed with apt-get when possible, otherwise it is an error
# (never a skip): these tests must run in CI.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=../../deploy/lib-pg.sh
source "$repo/deploy/lib-pg.sh"

cache="${1:-${CARGO_TARGET_DIR:-$repo/target}/drivers}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

# One installer at a time (several test binaries or run.sh + cargo test may race).
exec 9>"$cache/.lock"
flock 9

ensure_runtimes() {
  command -v python3 >/dev/null || apt_install python3 python3-venv
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  command -v python3 >/dev/null || die "python3 is missing and could not be installed"
  command -v node >/dev/null || die "node is missing and could not be installed"
  command -v npm >/dev/null || die "npm is missing and could not be installed"
}

stamp_of() {
  {
    cat "$here/requirements.txt" "$here/package.json" "$here/package-lock.json"
    python3 --version 2>&1
    node --version
  } | sha256sum | cut -d' ' -f1
}

install_python() {
  log "installing Python drivers into $cache/venv"
  rm -rf "$cache/venv"
  python3 -m venv "$cache/venv" || die "python3 -m venv failed (install python3-venv)"
  "$cache/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --require-virtualenv -r "$here/requirements.txt"
  "$cache/venv/bin/python" -c 'import psycopg, asyncpg'
}

install_node() {
  log "installing node-postgres into $cache/node"
  rm -rf "$cache/node"
  mkdir -p "$cache/node"
  cp "$here/package.json" "$here/package-lock.json" "$cache/node/"
  (cd "$cache/node" && npm ci --no-audit --no-fund --loglevel=error)
  (cd "$cache/node" && node -e 'require("pg")')
}

ensure_runtimes
stamp="$(stamp_of)"
if [ -f "$cache/.stamp" ] && [ "$(cat "$cache/.stamp")" = "$stamp" ] &&
  [ -x "$cache/venv/bin/python" ] && [ -d "$cache/node/node_modules/pg" ]; then
  exit 0
fi
rm -f "$cache/.stamp"
install_python
install_node
printf '%s\n' "$stamp" >"$cache/.stamp"
log "drivers installed in $cache"
