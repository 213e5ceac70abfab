# shellcheck shell=bash
# Helpers shared by tests/run.sh and deploy/quickstart.sh (source it, do not run it).
#
# They find PostgreSQL's tools (Debian keeps initdb/pg_ctl off PATH, in
# /usr/lib/postgresql/<version>/bin), install what a fresh Debian lacks, and run server tools as
# the `postgres` OS user when we are root (PostgreSQL refuses to run as root).

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# as_root CMD...: runs CMD with root rights (directly, or through sudo).
as_root() {
  if is_root; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "root rights needed for: $* (run as root or install sudo)"
  fi
}

# apt_install PKG...: installs Debian packages without prompts and without starting services
# (a policy-rc.d that forbids starts is in place for the duration of the install).
apt_install() {
  command -v apt-get >/dev/null || die "please install $* (no apt-get on this machine)"
  log "installing $* with apt-get"
  local policy=/usr/sbin/policy-rc.d added="" status=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    added=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || status=$?
  if [ "$status" -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" || status=$?
  fi
  if [ -n "$added" ]; then as_root rm -f "$policy"; fi
  [ "$status" -eq 0 ] || die "apt-get could not install $*"
}

# pg_bindir: prints the directory holding initdb and pg_ctl, newest Debian version first,
# then PATH; fails when PostgreSQL's server tools are not installed.
pg_bindir() {
  local dir
  while IFS= read -r dir; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

# pg_tool NAME: prints the path of a PostgreSQL program (psql, pgbench, ...), or fails.
pg_tool() {
  local dir
  if dir=$(pg_bindir) && [ -x "$dir/$1" ]; then
    printf '%s\n' "$dir/$1"
  else
    command -v "$1"
  fi
}

# ensure_postgres: installs server, client and contrib (pgbench) when any tool is missing.
ensure_postgres() {
  if pg_bindir >/dev/null && pg_tool psql >/dev/null && pg_tool pgbench >/dev/null; then
    return 0
  fi
  apt_install postgresql postgresql-client postgresql-contrib
  pg_bindir >/dev/null || die "PostgreSQL was installed but initdb/pg_ctl are still missing"
}

# ensure_cc: the ring crate (TLS) compiles C code, which a Rust-only machine may not support.
ensure_cc() {
  command -v cc >/dev/null || apt_install gcc libc6-dev
}

# give_to_pg_user DIR: when root, makes sure the `postgres` OS user exists and owns DIR.
give_to_pg_user() {
  is_root || return 0
  if ! id -u postgres >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
  fi
  chown -R postgres: "$1"
}

# pg_run TOOL ARGS...: runs a server tool (initdb, pg_ctl) as `postgres` when root.
pg_run() {
  local bin
  bin="$(pg_bindir)/$1" || die "PostgreSQL server tools not found"
  shift
  if is_root; then
    (cd / && runuser -u postgres -- "$bin" "$@")
  else
    "$bin" "$@"
  fi
}

# free_port: prints a loopback port nobody answers on (a server's start tells if it lost a race
# for it, and the caller retries).
free_port() {
  local port _
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 20000))
    if ! (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  return 1
}

# begin_throwaway NAME: the start of every script that runs a throwaway cluster. Installs the
# script's `cleanup` for exit and interrupts, creates $STATE (traversable by the postgres user)
# and random passwords for the superuser and the `app` role.
begin_throwaway() {
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  STATE=$(mktemp -d "${TMPDIR:-/tmp}/pgferry-$1.XXXXXX")
  chmod 755 "$STATE"
  SUPER_PASSWORD=$(openssl rand -hex 16)
  APP_PASSWORD=$(openssl rand -hex 16)
}

# init_cluster [CONF_LINE...]: a throwaway cluster in $STATE/data for the superuser `postgres`
# with password $SUPER_PASSWORD, SCRAM for everything, loopback only; extra postgresql.conf
# lines may be given.
init_cluster() {
  printf '%s\n' "$SUPER_PASSWORD" >"$STATE/pwfile"
  give_to_pg_user "$STATE"
  pg_run initdb -D "$STATE/data" -U postgres --auth=scram-sha-256 \
    --pwfile="$STATE/pwfile" --encoding=UTF8 --no-locale >/dev/null
  rm -f "$STATE/pwfile"
  {
    printf "listen_addresses = '127.0.0.1'\n"
    printf "unix_socket_directories = '%s'\n" "$STATE"
    printf "password_encryption = 'scram-sha-256'\n"
    printf '%s\n' "$@"
  } >>"$STATE/data/postgresql.conf"
  printf 'host all all 127.0.0.1/32 scram-sha-256\n' >"$STATE/data/pg_hba.conf"
}

# start_cluster: starts $STATE/data on a free port (retrying if another process took it);
# sets PG_PORT.
start_cluster() {
  local _
  for _ in 1 2 3 4 5; do
    PG_PORT=$(free_port) || die "no free port found for PostgreSQL"
    if pg_run pg_ctl -D "$STATE/data" -l "$STATE/postgres.log" -o "-p $PG_PORT" -w start \
      >/dev/null; then
      return 0
    fi
    grep -q "Address already in use" "$STATE/postgres.log" || break
  done
  tail -n 20 "$STATE/postgres.log" >&2 || true
  die "PostgreSQL did not start (log above)"
}

# stop_cluster: fast shutdown of $STATE/data if it runs.
stop_cluster() {
  [ -f "$STATE/data/postmaster.pid" ] || return 0
  pg_run pg_ctl -D "$STATE/data" -m fast -w stop >/dev/null || true
}
