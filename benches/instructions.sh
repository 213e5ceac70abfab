#!/usr/bin/env bash
# Deterministic cost of pgferry per transaction: `bash benches/instructions.sh`.
#
# pgbench's TPS on a shared machine moves by ±15 % with the load; the number of instructions
# pgferry executes per transaction does not. This script runs pgferry under valgrind's callgrind,
# drives fixed pgbench workloads through it (after a warm-up that fills the pool and the
# statement caches) and prints the instructions pgferry executed per transaction (or per new
# connection), counted only over each measured workload. Use it to judge a hot-path change: a
# difference of more than ~2 % is real.
#
# Environment:
#   BENCH_TXNS=2000      transactions per persistent-client scenario (8 clients)
#   BENCH_CONNECTS=40    connections for the connect-per-transaction scenarios
#   BENCH_KEEP=1         keep the callgrind dumps (for callgrind_annotate) and print where
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/lib-pg.sh
source deploy/lib-pg.sh
# shellcheck source=benches/lib-bench.sh
source benches/lib-bench.sh

TXNS=${BENCH_TXNS:-2000}
CONNECTS=${BENCH_CONNECTS:-40}
CLIENTS=8
STATE=""
DUMPS=0
RUN_TOTAL=""

# Scenario table: id | label | pgbench arguments | count of measured units | environment.
SCENARIOS=(
  "simple|select-only, simple, per txn|-c $CLIENTS -S -M simple -t $((TXNS / CLIENTS))|$TXNS|PGSSLMODE=disable"
  "extended|select-only, extended, per txn|-c $CLIENTS -S -M extended -t $((TXNS / CLIENTS))|$TXNS|PGSSLMODE=disable"
  "prepared|select-only, prepared, per txn|-c $CLIENTS -S -M prepared -t $((TXNS / CLIENTS))|$TXNS|PGSSLMODE=disable"
  "tpcb|tpcb-like, per txn|-c $CLIENTS -t $((TXNS / CLIENTS / 4))|$((TXNS / 4))|PGSSLMODE=disable"
  "connect|connect, plain, per connection|-C -c 2 -S -t $((CONNECTS / 2))|$CONNECTS|PGSSLMODE=disable"
  "connect_tls|connect, TLS, per connection|-C -c 2 -S -t $((CONNECTS / 2))|$CONNECTS|PGSSLMODE=require"
)

cleanup() {
  [ -n "$STATE" ] || return 0
  stop_pgferry
  stop_bench_cluster
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    log "callgrind dumps kept in $STATE (callgrind_annotate FILE)"
  else
    rm -rf "$STATE"
  fi
}

# pgbench_run ENV ARGS...: pgbench through pgferry; fails on any failed transaction.
pgbench_run() {
  local env=$1 out="$STATE/pgbench.txt"
  shift
  # shellcheck disable=SC2086 # ENV is a word list on purpose
  if ! env $env PGPASSWORD=$APP_PASSWORD "$(pg_tool pgbench)" -n "$@" \
    -h 127.0.0.1 -p "$PGFERRY_PORT" -U app app >"$out" 2>&1; then
    tail -n 5 "$out" >&2
    die "pgbench $* failed"
  fi
}

# callgrind_command OPTION: sends a command to the callgrind running pgferry. Callgrind reads
# commands only while the program runs, so a query wakes pgferry until the command is taken.
callgrind_command() {
  callgrind_control "$1" "$PGFERRY_PID" >/dev/null 2>&1 &
  local control=$!
  while kill -0 "$control" 2>/dev/null; do
    PGPASSWORD=$APP_PASSWORD "$(pg_tool psql)" -X -q -t \
      "host=127.0.0.1 port=$PGFERRY_PORT user=app dbname=app sslmode=disable" \
      -c 'SELECT 1' >/dev/null 2>&1 || true
  done
  wait "$control"
}

# dump_total N: the instruction total of callgrind's Nth dump.
dump_total() {
  sed -n 's/^totals: \([0-9]*\).*/\1/p' "$STATE/callgrind.out.$1"
}

# measured_run ENV ARGS: sets RUN_TOTAL to the instructions pgferry executes while pgbench runs
# ARGS (not a subshell: the dump counter must advance).
measured_run() {
  local env=$1 args=$2
  callgrind_command -z
  # shellcheck disable=SC2086 # ARGS is a word list on purpose
  pgbench_run "$env" $args
  callgrind_command -d
  DUMPS=$((DUMPS + 1))
  RUN_TOTAL=$(dump_total "$DUMPS")
}

# measure ID LABEL ARGS UNITS ENV: instructions per unit. Persistent-client scenarios run twice,
# with -t 10 and with the full count, and divide the difference by the difference in
# transactions, so logins and the callgrind control traffic cancel out.
measure() {
  local id=$1 label=$2 args=$3 units=$4 env=$5 total base=0 base_units=0
  # shellcheck disable=SC2086 # ARGS is a word list on purpose
  pgbench_run "$env" ${args/-t */-t 5}
  if [[ $args != -C* ]]; then
    measured_run "$env" "${args/-t */-t 10}"
    base=$RUN_TOTAL
    base_units=$((CLIENTS * 10))
  fi
  measured_run "$env" "$args"
  total=$RUN_TOTAL
  [ -n "$total" ] && [ -n "$base" ] || die "no callgrind total for $id"
  mv "$STATE/callgrind.out.$DUMPS" "$STATE/callgrind.$id"
  printf '%-36s %14s %12s\n' "$label" "$((total - base))" \
    "$(awk -v t="$((total - base))" -v n="$((units - base_units))" 'BEGIN { printf "%.0f", t / n }')"
}

command -v cargo >/dev/null || die "cargo not found: install Rust first (https://rustup.rs)"
ensure_cc
ensure_postgres
command -v valgrind >/dev/null || apt_install valgrind
command -v openssl >/dev/null || apt_install openssl

log "building pgferry (release)"
cargo build --release --quiet

begin_throwaway instr

init_bench_cluster
start_bench_cluster
create_bench_role
PGPASSWORD=$APP_PASSWORD "$(pg_tool pgbench)" -i -q -s 1 -h 127.0.0.1 -p "$PG_PORT" -U app app \
  >"$STATE/init.txt" 2>&1 || { cat "$STATE/init.txt" >&2; die "pgbench -i failed"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -keyout "$STATE/tls.key" -out "$STATE/tls.crt" 2>/dev/null ||
  die "openssl could not create a certificate"
export PGFERRY_TLS_CERT=$STATE/tls.crt PGFERRY_TLS_KEY=$STATE/tls.key PGFERRY_TLS_MODE=allow

# Dumps are numbered from 1 in dump order; a dump at exit is not needed.
PGFERRY_WRAPPER="valgrind --tool=callgrind \
  --callgrind-out-file=$STATE/callgrind.out" WAIT_TRIES=600 start_pgferry 4

printf 'pgferry %s, instructions executed by pgferry (callgrind), pool 4, %s clients\n' \
  "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$CLIENTS"
printf '%-36s %14s %12s\n' scenario instructions "per unit"
for line in "${SCENARIOS[@]}"; do
  IFS='|' read -r id label args units env <<<"$line"
  measure "$id" "$label" "$args" "$units" "$env"
done
