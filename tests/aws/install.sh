#!/usr/bin/env bash
# Installs botocore, the independent implementation of IAM database auth tokens that
# tests/rds_token.rs compares `pgferry rds-token` with: PyPI's botocore and its dependencies
# (pinned in requirements.txt) in a venv.
#
# Usage: bash tests/aws/install.sh [CACHE_DIR]   (default: ${CARGO_TARGET_DIR:-target}/aws)
# Result: CACHE_DIR/venv/bin/python, which imports botocore.
# Idempotent (a stamp of the pins and the Python version). A missing runtime is installed with
# apt-get when possible; a failed install is an error (never a skip).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=../../deploy/lib-pg.sh
source "$repo/deploy/lib-pg.sh"

cache="${1:-${CARGO_TARGET_DIR:-$repo/target}/aws}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

exec 9>"$cache/.lock"
flock 9

# Debian's interpreter (a pyenv python3 earlier on PATH may lack venv/ensurepip).
py=/usr/bin/python3

ensure_runtime() {
  if ! { [ -x "$py" ] && "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; }; then
    apt_install python3 python3-venv
  fi
  "$py" -c 'import venv, ensurepip' >/dev/null 2>&1 || die "$py with venv and ensurepip is required"
}

stamp_of() {
  { cat "$here/requirements.txt"; "$py" --version 2>&1; } | sha256sum | cut -d' ' -f1
}

ensure_runtime
stamp="$(stamp_of)"
python="$cache/venv/bin/python"
if [ -f "$cache/.stamp" ] && [ "$(cat "$cache/.stamp")" = "$stamp" ] && [ -x "$python" ]; then
  exit 0
fi
rm -f "$cache/.stamp"
log "installing botocore into $cache/venv"
rm -rf "$cache/venv"
"$py" -m venv "$cache/venv"
"$python" -m pip install --quiet --disable-pip-version-check --no-input \
  --require-virtualenv --no-deps -r "$here/requirements.txt"
"$python" -c 'import botocore.session, botocore.signers' || die "botocore was not installed"
printf '%s\n' "$stamp" >"$cache/.stamp"
log "botocore installed in $cache"
