#!/usr/bin/env bash
# The test command: `bash tests/run.sh` from anywhere in the repository.
#
# On a fresh Debian with only the Rust toolchain it first installs what is missing (PostgreSQL
# server, psql, pgbench; a C compiler; rustfmt and clippy), then checks formatting, lints and
# runs every test target. It stops at the first failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/lib-pg.sh
source deploy/lib-pg.sh

command -v cargo >/dev/null || die "cargo not found: install Rust first (https://rustup.rs)"

# ensure_rust_component SUBCOMMAND COMPONENT: e.g. `cargo fmt` comes with the rustfmt component.
ensure_rust_component() {
  cargo "$1" --version >/dev/null 2>&1 && return 0
  command -v rustup >/dev/null || die "cargo $1 is missing and rustup is not available"
  log "adding rust component $2"
  rustup component add "$2"
}
ensure_rust_component fmt rustfmt
ensure_rust_component clippy clippy
ensure_cc
ensure_postgres
log "PostgreSQL tools in $(pg_bindir)"

step() {
  log "$*"
  "$@" || die "failed: $*"
}
step cargo fmt --check
step cargo clippy --all-targets -- -D warnings
step bash tests/drivers/install.sh
step bash tests/exporter/install.sh
step bash tests/aws/install.sh
step cargo test --all-targets
log "all checks passed"
