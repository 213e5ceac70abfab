#!/usr/bin/env bash
# Memory and scale benchmark for pgferry (scenarios 5 and 6 of the performance budget):
# `bash benches/scale.sh`.
#
# It starts a throwaway PostgreSQL cluster (SCRAM, loopback), builds pgferry in release and starts
# it in quick mode (transaction pooling, pool $BENCH_POOL_SIZE, a self-signed certificate,
# --tls-mode allow). The clients are benches/scale_clients.py: real wire-protocol clients (startup,
# SCRAM-SHA-256, optional TLS) in asyncio, Python standard library only.
#   5. idle memory: pgferry's VmRSS before and after $IDLE_CLIENTS logged-in idle plain clients,
#      then the same with TLS clients -> bytes per idle client (parking off: every client is
#      in the runtime); then plain and TLS clients arriving in batches of $IDLE_BATCH, each
#      batch silent for 2.5 s so pgferry (client_park_after = 1s) parks it before the next
#      arrives: the memory of long-idle clients;
#   6. scale: $SCALE_CLIENTS concurrent clients (all logged in at once), each running
#      $SCALE_TXNS transactions (BEGIN / SELECT 1 / COMMIT) at random moments within
#      $SCALE_SPREAD seconds -> errors, p50/p99 transaction latency, pgferry's RSS peak, wall time.
#      (tx/s is the rate achieved over the transaction phase: the offered rate while pgferry keeps
#      up, its capacity with these clients once SCALE_SPREAD is short enough to saturate it.)
# pgferry is restarted before each of the five runs, so no run reuses memory another freed and
# the peak RSS (VmHWM) of the scale run belongs to that run alone.
#
# Environment:
#   IDLE_CLIENTS=2000    idle clients per kind (plain, TLS, parked)
#   IDLE_BATCH=100       clients per batch in the parked run
#   SCALE_CLIENTS=10000  concurrent clients in the scale run (pgferry's default client limit)
#   SCALE_TXNS=3         transactions per client
#   SCALE_SPREAD=10      seconds over which each client's transactions are spread
#   SCALE_PROCS=nproc    client processes for the scale run
#   BENCH_POOL_SIZE=16   backend connections
#
# Exit status: non-zero when any client saw an error. Needs file descriptors for 10k+ sockets:
# raises `ulimit -n` (as root it can raise the hard limit too).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/lib-pg.sh
source deploy/lib-pg.sh
# shellcheck source=benches/lib-bench.sh
source benches/lib-bench.sh

IDLE_CLIENTS=${IDLE_CLIENTS:-2000}
IDLE_BATCH=${IDLE_BATCH:-100}
SCALE_CLIENTS=${SCALE_CLIENTS:-10000}
SCALE_TXNS=${SCALE_TXNS:-3}
SCALE_SPREAD=${SCALE_SPREAD:-10}
SCALE_PROCS=${SCALE_PROCS:-$(nproc)}
POOL_SIZE=${BENCH_POOL_SIZE:-16}
CLIENTS=benches/scale_clients.py
STATE=""
FAILED=0

cleanup() {
  [ -n "$STATE" ] || return 0
  stop_pgferry
  stop_bench_cluster
  rm -rf "$STATE"
}

# raise_fd_limit: room for every client socket plus pgferry's (both inherit this shell's limit).
raise_fd_limit() {
  local want=$((SCALE_CLIENTS * 2 + 1024))
  [ "$want" -ge 65536 ] || want=65536
  ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  [ "$(ulimit -n)" -gt "$((SCALE_CLIENTS + 256))" ] ||
    log "warning: ulimit -n is $(ulimit -n): too low for $SCALE_CLIENTS clients"
}

make_proxy_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$STATE/proxy.key" -out "$STATE/proxy.crt" 2>/dev/null
  chmod 600 "$STATE/proxy.key"
}

# field FILE KEY: one value of the JSON object in FILE ("" when absent or null).
field() {
  python3 -c 'import json, sys
v = json.load(open(sys.argv[1])).get(sys.argv[2])
print("" if v is None else (json.dumps(v) if isinstance(v, dict) else v))' "$1" "$2"
}

# calc EXPR: awk arithmetic printed to one decimal place.
calc() { awk "BEGIN { printf \"%.1f\", $1 }"; }

# idle_run KIND [--tls ...]: scenario 5 for one kind of client; JSON in $STATE/idle-KIND.json.
idle_run() {
  local kind=$1 out="$STATE/idle-$1.json"
  shift
  log "idle: $IDLE_CLIENTS $kind clients"
  PGPASSWORD=$APP_PASSWORD python3 "$CLIENTS" idle --port "$PGFERRY_PORT" \
    --pid "$PGFERRY_PID" --count "$IDLE_CLIENTS" "$@" >"$out"
  local errors
  errors=$(field "$out" errors)
  if [ "$errors" != "{}" ] || [ "$(field "$out" clients)" != "$IDLE_CLIENTS" ]; then
    FAILED=1
    log "idle $kind errors: $errors"
  fi
}

scale_run() {
  log "scale: $SCALE_CLIENTS clients x $SCALE_TXNS transactions, pool $POOL_SIZE"
  PGPASSWORD=$APP_PASSWORD python3 "$CLIENTS" scale --port "$PGFERRY_PORT" \
    --pid "$PGFERRY_PID" --clients "$SCALE_CLIENTS" --procs "$SCALE_PROCS" \
    --txns "$SCALE_TXNS" --spread "$SCALE_SPREAD" >"$STATE/scale.json"
  if [ "$(field "$STATE/scale.json" errors)" != 0 ]; then
    FAILED=1
    log "scale errors: $(field "$STATE/scale.json" error_kinds)"
  fi
  kill -0 "$PGFERRY_PID" 2>/dev/null || { FAILED=1; log "pgferry died during the scale run"; }
}

# idle_row KIND: one line of the idle table.
idle_row() {
  local f="$STATE/idle-$1.json" before after n
  before=$(field "$f" rss_before)
  after=$(field "$f" rss_after)
  n=$(field "$f" clients)
  printf '%-22s %8s %14s %14s %16s %10s\n' "idle $1" "$n" \
    "$(calc "$before / 1048576")" "$(calc "$after / 1048576")" \
    "$(calc "($after - $before) / ($n > 0 ? $n : 1) / 1024")" "$(field "$f" login_seconds)"
}

print_tables() {
  local f="$STATE/scale.json"
  printf '\n%-22s %8s %14s %14s %16s %10s\n' scenario clients 'RSS before MiB' \
    'RSS after MiB' 'KiB per client' 'login s'
  idle_row plain
  idle_row tls
  idle_row plain-parked
  idle_row tls-parked
  printf '\n%-10s %10s %12s %7s %9s %9s %8s %13s %13s %10s %8s\n' clients connected \
    transactions errors 'p50 ms' 'p99 ms' 'tx/s' 'RSS conn MiB' 'RSS peak MiB' 'connect s' \
    'wall s'
  printf '%-10s %10s %12s %7s %9s %9s %8s %13s %13s %10s %8s\n' "$(field "$f" clients)" \
    "$(field "$f" connected)" \
    "$(field "$f" transactions)/$(field "$f" expected_transactions)" "$(field "$f" errors)" \
    "$(calc "0$(field "$f" p50_ms)")" "$(calc "0$(field "$f" p99_ms)")" \
    "$(calc "$(field "$f" transactions) / ($(field "$f" tx_seconds) + 0.001)")" \
    "$(calc "$(field "$f" rss_connected) / 1048576")" \
    "$(calc "$(field "$f" vm_hwm) / 1048576")" \
    "$(field "$f" connect_seconds)" "$(field "$f" wall_seconds)"
  printf '(budget: <= 1 KiB per idle plain client, <= 5 KiB per idle TLS client;\n'
  printf ' scale: 0 errors, RSS <= 100 MiB; RSS peak is VmHWM of the restarted pgferry)\n'
}

command -v cargo >/dev/null || die "cargo not found: install Rust first (https://rustup.rs)"
command -v python3 >/dev/null || apt_install python3
ensure_cc
ensure_postgres
command -v openssl >/dev/null || apt_install openssl

log "building pgferry (release)"
cargo build --release --quiet

raise_fd_limit
begin_throwaway scale

machine_info
printf 'run:      pool size %s, transaction pooling, SCRAM auth, ulimit -n %s\n' \
  "$POOL_SIZE" "$(ulimit -n)"

log "starting a throwaway PostgreSQL cluster in $STATE"
init_bench_cluster
start_bench_cluster
create_bench_role
make_proxy_cert
# start_pgferry (lib-bench.sh) passes no TLS flags; pgferry reads these from the environment.
export PGFERRY_TLS_CERT=$STATE/proxy.crt PGFERRY_TLS_KEY=$STATE/proxy.key PGFERRY_TLS_MODE=allow

printf 'pgferry:  %s\n' "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
PGFERRY_CLIENT_PARK_AFTER=0 start_pgferry "$POOL_SIZE"
idle_run plain
stop_pgferry
PGFERRY_CLIENT_PARK_AFTER=0 start_pgferry "$POOL_SIZE"
idle_run tls --tls --cafile "$STATE/proxy.crt"
stop_pgferry
PGFERRY_CLIENT_PARK_AFTER=1s start_pgferry "$POOL_SIZE"
idle_run plain-parked --batch "$IDLE_BATCH" --batch-wait 2.5
stop_pgferry
PGFERRY_CLIENT_PARK_AFTER=1s start_pgferry "$POOL_SIZE"
idle_run tls-parked --batch "$IDLE_BATCH" --batch-wait 2.5 --tls --cafile "$STATE/proxy.crt"
stop_pgferry
start_pgferry "$POOL_SIZE"
scale_run
print_tables
if [ "$FAILED" -ne 0 ]; then
  log "errors above; pgferry log tail:"
  tail -n 20 "$STATE/pgferry.log" >&2 || true
  exit 1
fi
