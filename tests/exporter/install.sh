#!/usr/bin/env bash
# Installs the PgBouncer Prometheus exporter used by tests/admin_exporter.rs: PyPI's
# prometheus-pgbouncer-exporter (pinned in requirements.txt) in a venv that sees Debian's
# psycopg2, prometheus_client, yaml and pythonjsonlogger.
#
# Debian's own prometheus-pgbouncer-exporter package (1.7) is not used: it reads columns that
# PgBouncer removed in 1.8 (SHOW STATS total_requests, SHOW DATABASES reserve_pool), so it fails
# against PgBouncer 1.25 as much as against pgferry.
#
# Usage: bash tests/exporter/install.sh [CACHE_DIR]   (default: ${CARGO_TARGET_DIR:-target}/exporter)
# Result: CACHE_DIR/venv/bin/pgbouncer-exporter.
# Idempotent (a stamp of the pins and the Python version). A missing runtime or package is
# installed with apt-get when possible, otherwise it is an error (never a skip).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=../../deploy/lib-pg.sh
source "$repo/deploy/lib-pg.sh"

cache="${1:-${CARGO_TARGET_DIR:-$repo/target}/exporter}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

exec 9>"$cache/.lock"
flock 9

# Debian's interpreter, where the apt packages go (a pyenv python3 earlier on PATH would not
# see them).
py=/usr/bin/python3

debian_modules() {
  [ -x "$py" ] && "$py" -c 'import venv, ensurepip, psycopg2, prometheus_client, yaml, pythonjsonlogger' \
    >/dev/null 2>&1
}

ensure_runtime() {
  if ! debian_modules; then
    apt_install python3 python3-venv python3-psycopg2 python3-prometheus-client python3-yaml \
      python3-pythonjsonlogger
  fi
  debian_modules || die "$py with venv, psycopg2, prometheus_client, yaml, pythonjsonlogger is required"
}

stamp_of() {
  { cat "$here/requirements.txt"; "$py" --version 2>&1; } | sha256sum | cut -d' ' -f1
}

ensure_runtime
stamp="$(stamp_of)"
exporter="$cache/venv/bin/pgbouncer-exporter"
if [ -f "$cache/.stamp" ] && [ "$(cat "$cache/.stamp")" = "$stamp" ] && [ -x "$exporter" ]; then
  exit 0
fi
rm -f "$cache/.stamp"
log "installing the PgBouncer exporter into $cache/venv"
rm -rf "$cache/venv"
"$py" -m venv --system-site-packages "$cache/venv"
"$cache/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  --require-virtualenv --no-deps -r "$here/requirements.txt"
"$cache/venv/bin/python" -W ignore -c 'import prometheus_pgbouncer_exporter.collector'
[ -x "$exporter" ] || die "pgbouncer-exporter was not installed"
printf '%s\n' "$stamp" >"$cache/.stamp"
log "exporter installed in $cache"
