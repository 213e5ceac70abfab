#!/usr/bin/env bash
# Macro benchmark: the same pgbench scenarios against PostgreSQL directly, through pgferry and
# through PgBouncer, interleaved in one run, on one machine: `bash benches/compare.sh`.
#
# It starts a throwaway PostgreSQL cluster (SCRAM, loopback, free port; installed with apt when
# missing), builds pgferry in release, starts pgferry in quick mode and PgBouncer (both:
# transaction pooling, pool size $BENCH_POOL_SIZE, SCRAM client auth), runs the scenarios and
# prints one table with TPS (or latency) per target and the ratios pgferry/PgBouncer and
# pgferry/direct. Everything is stopped and deleted on exit.
#
# Environment:
#   BENCH_DURATION=10   seconds per pgbench run (3 is enough for a smoke run)
#   BENCH_POOL_SIZE=16  backend connections per pooler
#   BENCH_INSTALL=1     install PgBouncer with apt-get when missing; 0 = skip the PgBouncer column
#   BENCH_SCENARIOS=""  space-separated scenario ids to run (default: all), e.g. "connect connect_tls"
#   BENCH_ROUNDS=1      run the chosen scenarios this many times, each round printing its table
#
# Exit status: non-zero when any pgferry run had errors (failed or aborted transactions).
# Note: pgbench, the poolers and PostgreSQL share this machine's cores; compare ratios, not
# absolute numbers, across machines.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/lib-pg.sh
source deploy/lib-pg.sh
# shellcheck source=benches/lib-bench.sh
source benches/lib-bench.sh

DURATION=${BENCH_DURATION:-10}
POOL_SIZE=${BENCH_POOL_SIZE:-16}
INSTALL=${BENCH_INSTALL:-1}
ONLY=${BENCH_SCENARIOS:-}
ROUNDS=${BENCH_ROUNDS:-1}
STATE=""
declare -A PORT=() RESULT=() FAILED=() CPU=()

# Scenario table: id | label | metric (tps or latency) | pgbench arguments | targets |
# environment for pgbench (optional). Scenarios whose id starts with "connect" also record the
# pooler's own CPU time per new connection (pgbench's SCRAM hashing dominates their wall time).
SCENARIOS=(
  "sel_simple|select-only, 64 clients, simple|tps|-c 64 -j 2 -S -M simple|direct pgferry pgbouncer"
  "sel_ext|select-only, 64 clients, extended|tps|-c 64 -j 2 -S -M extended|direct pgferry pgbouncer"
  "sel_prep|select-only, 64 clients, prepared|tps|-c 64 -j 2 -S -M prepared|direct pgferry pgbouncer"
  "connect|connect per transaction, 32 clients|tps|-C -c 32 -j 2 -S|direct pgferry pgbouncer"
  "connect_tls|connect per transaction, TLS, 32 clients|tps|-C -c 32 -j 2 -S|pgferry pgbouncer|PGSSLMODE=require"
  "latency|single client, avg latency (ms)|latency|-c 1 -j 1 -S|direct pgferry pgbouncer"
  "tpcb|tpcb-like, 32 clients|tps|-c 32 -j 2|direct pgferry pgbouncer"
)

cleanup() {
  [ -n "$STATE" ] || return 0
  stop_pgferry
  stop_pgbouncer
  stop_bench_cluster
  rm -rf "$STATE"
}

# pooler_pid TARGET: the process serving TARGET (empty for direct PostgreSQL).
pooler_pid() {
  case $1 in
    pgferry) printf '%s' "$PGFERRY_PID" ;;
    pgbouncer) cat "$STATE/pgbouncer.pid" 2>/dev/null ;;
  esac
}

# cpu_ticks PID: user + system CPU time of PID so far, in clock ticks.
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# record_cpu ID TARGET TICKS_BEFORE OUT: pooler CPU microseconds per processed transaction.
record_cpu() {
  local pid after count
  pid=$(pooler_pid "$2")
  [ -n "$pid" ] || return 0
  after=$(cpu_ticks "$pid")
  count=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$4")
  [ -n "$count" ] && [ "$count" -gt 0 ] || return 0
  CPU[$1/$2]=$(awk -v t=$((after - $3)) -v hz="$(getconf CLK_TCK)" -v n="$count" \
    'BEGIN { printf "%.0f", t * 1000000 / hz / n }')
}

# run_one SCENARIO_ID METRIC TARGET ARGS ENV: one pgbench run; records the figure or the failure.
run_one() {
  local id=$1 metric=$2 target=$3 args=$4 env=$5 out status=0 value failed before=0 pid
  out="$STATE/out/$id-$target.txt"
  pid=$(pooler_pid "$target")
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  # Plain TCP unless the scenario's ENV says otherwise: both poolers also accept TLS, and
  # libpq's default (sslmode=prefer) would silently encrypt every pooler run but not direct ones.
  # shellcheck disable=SC2086 # ARGS and ENV are word lists on purpose
  env PGSSLMODE=disable $env PGPASSWORD=$APP_PASSWORD "$(pg_tool pgbench)" -n -T "$DURATION" $args \
    -h 127.0.0.1 -p "${PORT[$target]}" -U app app >"$out" 2>&1 || status=$?
  [[ $id == connect* ]] && record_cpu "$id" "$target" "$before" "$out"
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
  if [ "$metric" = latency ]; then
    value=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$out")
  else
    value=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | head -n 1)
  fi
  if [ "$status" -ne 0 ] || [ -z "$value" ] || [ "${failed:-0}" -ne 0 ]; then
    FAILED[$id/$target]=1
    log "$id via $target FAILED (exit $status, failed transactions ${failed:-?}):"
    grep -v '^progress' "$out" | tail -n 5 >&2 || true
  fi
  RESULT[$id/$target]=${value:-}
  log "$id via $target: ${value:-none} $metric"
}

# chosen ID: true when BENCH_SCENARIOS is empty or names ID.
chosen() {
  [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]
}

run_scenarios() {
  local line id label metric args targets env target
  for line in "${SCENARIOS[@]}"; do
    IFS='|' read -r id label metric args targets env <<<"$line"
    chosen "$id" || continue
    for target in $targets; do
      [ -n "${PORT[$target]:-}" ] || continue
      run_one "$id" "$metric" "$target" "$args" "$env"
    done
  done
}

# cell ID TARGET: the figure, "err" for a failed run, "n/a" for a run not made.
cell() {
  if [ -n "${FAILED[$1/$2]:-}" ]; then
    printf 'err'
  elif [ -n "${RESULT[$1/$2]:-}" ]; then
    awk -v v="${RESULT[$1/$2]}" 'BEGIN { printf (v < 10 ? "%.3f" : "%.0f"), v }'
  else
    printf 'n/a'
  fi
}

# ratio A B: A/B to two decimals, or n/a unless both are numbers.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2f", a / b; else printf "n/a" }'
}

print_table() {
  local line id label metric args targets d f b
  printf '\n%-38s %10s %10s %10s %17s %14s\n' scenario direct pgferry pgbouncer \
    pgferry/pgbouncer pgferry/direct
  for line in "${SCENARIOS[@]}"; do
    IFS='|' read -r id label metric args targets <<<"$line"
    chosen "$id" || continue
    d=$(cell "$id" direct)
    f=$(cell "$id" pgferry)
    b=$(cell "$id" pgbouncer)
    printf '%-38s %10s %10s %10s %17s %14s\n' "$label" "$d" "$f" "$b" \
      "$(ratio "$f" "$b")" "$(ratio "$f" "$d")"
  done
  printf '(TPS unless noted; for latency a ratio below 1 means pgferry is faster)\n'
  printf '\n%-38s %10s %10s %17s\n' "pooler CPU per new connection (us)" pgferry pgbouncer \
    pgferry/pgbouncer
  for line in "${SCENARIOS[@]}"; do
    IFS='|' read -r id label metric args targets <<<"$line"
    [[ $id == connect* ]] && chosen "$id" || continue
    f=${CPU[$id/pgferry]:-n/a}
    b=${CPU[$id/pgbouncer]:-n/a}
    printf '%-38s %10s %10s %17s\n' "$label" "$f" "$b" "$(ratio "$f" "$b")"
  done
}

# pgferry_failed: true when any pgferry run recorded a failure.
pgferry_failed() {
  local key
  for key in "${!FAILED[@]}"; do
    [[ $key == */pgferry ]] && return 0
  done
  return 1
}

# ensure_pgbouncer: true when PgBouncer is (or, with BENCH_INSTALL=1, becomes) available.
ensure_pgbouncer() {
  pgbouncer_bin >/dev/null && return 0
  [ "$INSTALL" = 1 ] || return 1
  apt_install pgbouncer
  pgbouncer_bin >/dev/null
}

command -v cargo >/dev/null || die "cargo not found: install Rust first (https://rustup.rs)"
ensure_cc
ensure_postgres
command -v openssl >/dev/null || apt_install openssl
HAVE_PGBOUNCER=0
if ensure_pgbouncer; then HAVE_PGBOUNCER=1; else log "PgBouncer not installed: skipping it"; fi

log "building pgferry (release)"
cargo build --release --quiet

begin_throwaway bench
mkdir "$STATE/out"

machine_info
printf 'run:      %s s per pgbench run, pool size %s, transaction pooling, SCRAM auth\n' \
  "$DURATION" "$POOL_SIZE"

log "starting a throwaway PostgreSQL cluster in $STATE"
init_bench_cluster
start_bench_cluster
create_bench_role
log "pgbench -i -s 10 (directly)"
PGPASSWORD=$APP_PASSWORD "$(pg_tool pgbench)" -i -q -s 10 -h 127.0.0.1 -p "$PG_PORT" -U app app \
  >"$STATE/out/init.txt" 2>&1 || { cat "$STATE/out/init.txt" >&2; die "pgbench -i failed"; }
PORT[direct]=$PG_PORT

# Both poolers serve TLS with the same certificate (ECDSA P-256, as a modern deployment would).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -keyout "$STATE/tls.key" -out "$STATE/tls.crt" 2>/dev/null ||
  die "openssl could not create a certificate"
export PGFERRY_TLS_CERT=$STATE/tls.crt PGFERRY_TLS_KEY=$STATE/tls.key PGFERRY_TLS_MODE=allow
export BENCH_TLS_CERT=$STATE/tls.crt BENCH_TLS_KEY=$STATE/tls.key

start_pgferry "$POOL_SIZE"
PORT[pgferry]=$PGFERRY_PORT
if [ "$HAVE_PGBOUNCER" = 1 ]; then
  start_pgbouncer "$POOL_SIZE"
  PORT[pgbouncer]=$PGBOUNCER_PORT
  printf 'pgbouncer: %s\n' "$("$(pgbouncer_bin)" --version | head -n 1)"
fi
printf 'pgferry:  %s\n' "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

PGFERRY_ERRORS=0
for ((round = 1; round <= ROUNDS; round++)); do
  [ "$ROUNDS" -eq 1 ] || printf '\nround %s of %s\n' "$round" "$ROUNDS"
  RESULT=() FAILED=() CPU=()
  run_scenarios
  print_table
  if pgferry_failed; then PGFERRY_ERRORS=1; fi
done
if [ "$PGFERRY_ERRORS" = 1 ]; then
  log "some pgferry runs had errors; pgferry log tail:"
  tail -n 20 "$STATE/pgferry.log" >&2 || true
  exit 1
fi
