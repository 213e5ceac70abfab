# shellcheck shell=bash
# Helpers for benches/compare.sh (source it after deploy/lib-pg.sh; do not run it).
#
# Everything lives under $STATE (a throwaway directory owned by `postgres` when we are root):
# the cluster, PgBouncer's config and logs, pgferry's log. Servers are started on free loopback
# ports; their process ids are recorded so cleanup stops exactly what was started.

PG_PORT=""
PGFERRY_PORT=""
PGFERRY_PID=""
PGBOUNCER_PORT=""

# machine_info: the lines that make two result tables comparable.
machine_info() {
  local cpu mem
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  printf 'date:     %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'machine:  %s cores, %s, %s RAM\n' "$(nproc)" "${cpu:-unknown CPU}" "$mem"
  printf 'kernel:   %s\n' "$(uname -sr)"
  printf 'load:     %s (1/5/15 min load average at start)\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf 'postgres: %s\n' "$("$(pg_tool pgbench)" --version)"
}

# init_bench_cluster: SCRAM everywhere, loopback only, room for 64 direct clients plus pools.
# synchronous_commit is off so tpcb-like measures the poolers rather than this machine's fsync.
init_bench_cluster() {
  init_cluster "max_connections = 200" "synchronous_commit = off"
}

# start_bench_cluster / stop_bench_cluster: see start_cluster / stop_cluster in lib-pg.sh.
start_bench_cluster() { start_cluster; }
stop_bench_cluster() { stop_cluster; }

# superuser_psql ARGS...: psql as the cluster superuser, straight to PostgreSQL.
superuser_psql() {
  PGPASSWORD=$SUPER_PASSWORD "$(pg_tool psql)" -X -q -v ON_ERROR_STOP=1 \
    "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" "$@"
}

create_bench_role() {
  superuser_psql -c "CREATE ROLE app LOGIN PASSWORD '$APP_PASSWORD'" \
    -c "CREATE DATABASE app OWNER app"
}

# wait_ready PORT WHAT: polls with a real login (SCRAM included) until the server answers
# ($WAIT_TRIES tries 0.1 s apart; a server under valgrind needs more).
wait_ready() {
  local _
  for _ in $(seq "${WAIT_TRIES:-100}"); do
    if PGPASSWORD=$APP_PASSWORD PGCONNECT_TIMEOUT=2 "$(pg_tool psql)" -X -q -t \
      "host=127.0.0.1 port=$1 user=app dbname=app" -c 'SELECT 1' >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  [ -f "$STATE/pgferry.log" ] && tail -n 20 "$STATE/pgferry.log" >&2
  die "$2 on port $1 did not accept a login"
}

# start_pgferry POOL_SIZE: quick mode, transaction pooling, no metrics listener. A command in
# $PGFERRY_WRAPPER (a word list, e.g. valgrind and its options) runs pgferry under it.
start_pgferry() {
  PGFERRY_PORT=$(free_port) || die "no free port found for pgferry"
  # shellcheck disable=SC2086 # PGFERRY_WRAPPER is a word list on purpose
  ${PGFERRY_WRAPPER:-} target/release/pgferry --listen "127.0.0.1:$PGFERRY_PORT" \
    --backend "postgres://app:$APP_PASSWORD@127.0.0.1:$PG_PORT/app" \
    --pool-size "$1" --pool-mode transaction --metrics-listen off \
    >"$STATE/pgferry.log" 2>&1 &
  PGFERRY_PID=$!
  wait_ready "$PGFERRY_PORT" pgferry
}

stop_pgferry() {
  [ -n "$PGFERRY_PID" ] || return 0
  kill "$PGFERRY_PID" 2>/dev/null || true
  wait "$PGFERRY_PID" 2>/dev/null || true
  PGFERRY_PID=""
}

# pgbouncer_bin: the PgBouncer executable, or failure.
pgbouncer_bin() {
  command -v pgbouncer || { [ -x /usr/sbin/pgbouncer ] && echo /usr/sbin/pgbouncer; }
}

# write_pgbouncer_config POOL_SIZE: transaction pooling with the role's SCRAM secret from
# pg_authid in auth_file, so PgBouncer verifies clients and logs in to PostgreSQL with SCRAM.
write_pgbouncer_config() {
  local secret
  secret=$(superuser_psql -At -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
  printf '"app" "%s"\n' "$secret" >"$STATE/userlist.txt"
  cat >"$STATE/pgbouncer.ini" <<INI
[databases]
app = host=127.0.0.1 port=$PG_PORT dbname=app

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $STATE/userlist.txt
pool_mode = transaction
default_pool_size = $1
max_client_conn = 2000
logfile = $STATE/pgbouncer.log
pidfile = $STATE/pgbouncer.pid
log_connections = 0
log_disconnections = 0
INI
  if [ -n "${BENCH_TLS_CERT:-}" ]; then
    cat >>"$STATE/pgbouncer.ini" <<INI
client_tls_sslmode = allow
client_tls_cert_file = $BENCH_TLS_CERT
client_tls_key_file = $BENCH_TLS_KEY
INI
  fi
  give_to_pg_user "$STATE"
}

# start_pgbouncer POOL_SIZE: daemonizes (as `postgres` when root: PgBouncer refuses root).
start_pgbouncer() {
  local bin
  bin=$(pgbouncer_bin) || die "pgbouncer not found"
  PGBOUNCER_PORT=$(free_port) || die "no free port found for PgBouncer"
  write_pgbouncer_config "$1"
  if is_root; then
    (cd / && runuser -u postgres -- "$bin" -d "$STATE/pgbouncer.ini")
  else
    "$bin" -d "$STATE/pgbouncer.ini"
  fi
  wait_ready "$PGBOUNCER_PORT" PgBouncer
}

stop_pgbouncer() {
  [ -f "$STATE/pgbouncer.pid" ] || return 0
  kill "$(cat "$STATE/pgbouncer.pid")" 2>/dev/null || true
}
