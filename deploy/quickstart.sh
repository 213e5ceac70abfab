#!/usr/bin/env bash
# Try pgferry in one command: `bash deploy/quickstart.sh`
#
# Builds pgferry, starts a throwaway PostgreSQL cluster (SCRAM, loopback only, free port) with
# a role `app` and database `app`, makes a self-signed certificate for the proxy, then runs
# pgferry in the foreground. Ctrl-C stops pgferry, then the cluster, and deletes everything.
# Override the proxy ports with PGFERRY_LISTEN / PGFERRY_METRICS_LISTEN.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/lib-pg.sh
source deploy/lib-pg.sh

LISTEN=${PGFERRY_LISTEN:-127.0.0.1:6432}
METRICS_LISTEN=${PGFERRY_METRICS_LISTEN:-127.0.0.1:9930}
STATE=""

cleanup() {
  [ -n "$STATE" ] || return 0
  if [ -f "$STATE/data/postmaster.pid" ]; then
    log "stopping the throwaway PostgreSQL cluster"
    stop_cluster
  fi
  rm -rf "$STATE"
}

create_app_role() {
  PGPASSWORD=$SUPER_PASSWORD "$(pg_tool psql)" -X -q -v ON_ERROR_STOP=1 \
    "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" \
    -c "CREATE ROLE app LOGIN PASSWORD '$APP_PASSWORD'" \
    -c "CREATE DATABASE app OWNER app"
}

make_proxy_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$STATE/proxy.key" -out "$STATE/proxy.crt" 2>/dev/null
  chmod 600 "$STATE/proxy.key"
}

command -v cargo >/dev/null || die "cargo not found: install Rust first (https://rustup.rs)"
ensure_cc
ensure_postgres
command -v openssl >/dev/null || apt_install openssl

log "building pgferry (release)"
cargo build --release

begin_throwaway quickstart

log "creating a throwaway PostgreSQL cluster in $STATE"
init_cluster
start_cluster
create_app_role
make_proxy_cert

cat <<INFO

pgferry listens on $LISTEN (PostgreSQL on 127.0.0.1:$PG_PORT). In another terminal:
  psql "postgresql://app:$APP_PASSWORD@${LISTEN}/app?sslmode=require"
Metrics: http://$METRICS_LISTEN/metrics
Ctrl-C stops pgferry and deletes the throwaway cluster.

INFO

target/release/pgferry \
  --listen "$LISTEN" \
  --backend "postgres://app:$APP_PASSWORD@127.0.0.1:$PG_PORT/app" \
  --tls-cert "$STATE/proxy.crt" --tls-key "$STATE/proxy.key" --tls-mode allow \
  --metrics-listen "$METRICS_LISTEN"
