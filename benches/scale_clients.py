#!/usr/bin/env python3
"""Load generator for benches/scale.sh: many real PostgreSQL clients in a few asyncio processes.

Each client speaks the wire protocol itself (startup, optional SSLRequest + TLS, SCRAM-SHA-256
login, simple queries), so the pooler sees exactly what a driver would send. Only the Python 3
standard library is used. Subcommands:

  idle   --count N [--tls]          open N logged-in idle clients; print the pooler's RSS before
                                    and after, as JSON; then close them.
  scale  --clients N --procs P      N clients spread over P worker processes: all log in, then
                                    each runs --txns transactions (BEGIN / SELECT 1 / COMMIT,
                                    three simple queries) at random moments within --spread
                                    seconds; prints errors, latency percentiles, RSS peak, JSON.
  worker                            (internal) one process of `scale`.

Common options: --port, --user, --password, --dbname, --pid (the pooler, for /proc RSS).
"""
import argparse
import asyncio
import base64
import collections
import hashlib
import hmac
import json
import os
import random
import resource
import ssl
import struct
import sys
import time

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
PROTOCOL_3 = 196608
CONNECT_TIMEOUT = 30.0
WARMUP_CLIENTS = 20
_SALTED_CACHE = {}


class PgError(Exception):
    """A failure a client saw: ErrorResponse text, protocol surprise or socket error."""


def raise_fd_limit():
    """10k sockets in one process exceed the usual soft limit of 1024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def vm_status(pid, field):
    """A field of /proc/PID/status in bytes (VmRSS, VmHWM), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def message(tag, body):
    return tag + struct.pack("!i", len(body) + 4) + body


def error_text(body):
    """The SQLSTATE and message fields of an ErrorResponse body."""
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1]] = part[1:].decode("utf-8", "replace")
    return f"{fields.get(b'C', '?')} {fields.get(b'M', '')}"


class Client:
    """One connection: a stream pair plus the few protocol steps the benchmark needs."""

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    async def read(self):
        header = await self.reader.readexactly(5)
        (length,) = struct.unpack("!i", header[1:])
        body = await self.reader.readexactly(length - 4) if length > 4 else b""
        if header[:1] == b"E":
            raise PgError(error_text(body))
        return header[:1], body

    async def expect_auth(self, code):
        tag, body = await self.read()
        if tag != b"R" or struct.unpack("!i", body[:4])[0] != code:
            raise PgError(f"expected authentication {code}, got {tag!r} {body[:4]!r}")
        return body[4:]

    async def until_ready(self):
        """Reads until ReadyForQuery; returns its transaction status byte."""
        while True:
            tag, body = await self.read()
            if tag == b"Z":
                return body

    async def query(self, sql):
        self.writer.write(message(b"Q", sql.encode() + b"\0"))
        return await self.until_ready()

    def close(self):
        try:
            self.writer.write(message(b"X", b""))
            self.writer.close()
        except (OSError, RuntimeError):
            pass


def salted_password(password, salt, iterations):
    """PBKDF2 is the client's cost, not the pooler's: computed once per (salt, iterations)."""
    key = (password, salt, iterations)
    if key not in _SALTED_CACHE:
        _SALTED_CACHE[key] = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return _SALTED_CACHE[key]


def hmac256(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


async def scram_login(client, password):
    """SCRAM-SHA-256 (RFC 5802/7677) without channel binding, as libpq does over plain TCP."""
    mechanisms = (await client.expect_auth(10)).split(b"\0")
    if b"SCRAM-SHA-256" not in mechanisms:
        raise PgError(f"server offers no SCRAM-SHA-256: {mechanisms!r}")
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n=,r={nonce}"
    first = ("n,," + first_bare).encode()
    body = b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first
    client.writer.write(message(b"p", body))
    server_first = (await client.expect_auth(11)).decode()
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    if not attrs.get("r", "").startswith(nonce):
        raise PgError("server nonce does not extend the client nonce")
    salted = salted_password(password, base64.b64decode(attrs["s"]), int(attrs["i"]))
    final_bare = f"c=biws,r={attrs['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    client_key = hmac256(salted, b"Client Key")
    signature = hmac256(hashlib.sha256(client_key).digest(), auth_message)
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    final = f"{final_bare},p={base64.b64encode(proof).decode()}".encode()
    client.writer.write(message(b"p", final))
    server_final = (await client.expect_auth(12)).decode()
    expected = hmac256(hmac256(salted, b"Server Key"), auth_message)
    if server_final != "v=" + base64.b64encode(expected).decode():
        raise PgError("bad server signature")
    await client.expect_auth(0)


async def open_stream(args, tls_context):
    if tls_context is None:
        return await asyncio.open_connection("127.0.0.1", args.port)
    reader, writer = await asyncio.open_connection("127.0.0.1", args.port)
    writer.write(SSL_REQUEST)
    answer = await reader.readexactly(1)
    if answer != b"S":
        writer.close()
        raise PgError(f"server refused TLS (answer {answer!r})")
    await writer.start_tls(tls_context, server_hostname="localhost")
    return reader, writer


async def connect(args, tls_context=None):
    """A logged-in client waiting in ReadyForQuery."""
    reader, writer = await open_stream(args, tls_context)
    client = Client(reader, writer)
    params = f"user\0{args.user}\0database\0{args.dbname}\0\0".encode()
    writer.write(struct.pack("!ii", len(params) + 8, PROTOCOL_3) + params)
    try:
        await scram_login(client, args.password)
        await client.until_ready()
    except BaseException:
        client.close()
        raise
    return client


async def connect_many(args, count, tls_context, parallel):
    """Opens COUNT clients, at most PARALLEL handshakes at a time (a driver pool's ramp, and
    what keeps the listen backlog from overflowing). Returns (clients, error counter)."""
    gate = asyncio.Semaphore(parallel)
    errors = collections.Counter()

    async def one():
        async with gate:
            try:
                return await asyncio.wait_for(connect(args, tls_context), CONNECT_TIMEOUT)
            except (PgError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as err:
                errors[f"connect: {type(err).__name__}: {err}"] += 1
                return None

    results = await asyncio.gather(*(one() for _ in range(count)))
    return [c for c in results if c is not None], errors


async def connect_batches(args, tls_context):
    """Opens --count clients at once, or with --batch N in batches of N, each followed by
    --batch-wait seconds of silence (clients arriving over time and going idle, so the pooler
    can park each batch before the next arrives)."""
    batch = args.batch or args.count
    clients, errors = [], collections.Counter()
    while len(clients) + sum(errors.values()) < args.count:
        size = min(batch, args.count - len(clients) - sum(errors.values()))
        opened, failed = await connect_many(args, size, tls_context, args.parallel)
        clients += opened
        errors.update(failed)
        if args.batch:
            await asyncio.sleep(args.batch_wait)
    return clients, errors


def tls_context_for(cafile):
    context = ssl.create_default_context(cafile=cafile)
    context.check_hostname = True
    return context


async def run_idle(args):
    raise_fd_limit()
    tls_context = tls_context_for(args.cafile) if args.tls else None
    # A few clients first, so one-time costs (worker threads, TLS setup) are not billed per
    # client; the pooler is fresh, so nothing freed by an earlier run is reused either.
    warm, _ = await connect_many(args, WARMUP_CLIENTS, tls_context, args.parallel)
    for client in warm:
        client.close()
    before = vm_status(args.pid, "VmRSS")
    started = time.monotonic()
    clients, errors = await connect_batches(args, tls_context)
    login_seconds = time.monotonic() - started
    after = vm_status(args.pid, "VmRSS")
    # Every client is in ReadyForQuery: prove they are live, then measure again.
    live = await asyncio.gather(*(c.query("SELECT 1") for c in clients[:10]),
                                return_exceptions=True)
    for client in clients:
        client.close()
    await asyncio.sleep(0)
    print(json.dumps({
        "clients": len(clients), "errors": dict(errors), "rss_before": before,
        "rss_after": after, "login_seconds": round(login_seconds, 2),
        "live_errors": sum(isinstance(x, BaseException) for x in live),
    }))


async def transactions(client, count, spread, latencies, errors):
    """COUNT transactions at random moments within SPREAD seconds of now."""
    deadline = time.monotonic()
    moments = sorted(random.uniform(0, spread) for _ in range(count))
    for moment in moments:
        delay = deadline + moment - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        started = time.monotonic()
        try:
            await client.query("BEGIN")
            await client.query("SELECT 1")
            status = await client.query("COMMIT")
            if status != b"I":
                raise PgError(f"status {status!r} after COMMIT")
        except (PgError, OSError, asyncio.IncompleteReadError) as err:
            errors[f"transaction: {type(err).__name__}: {err}"] += 1
            return
        latencies.append(time.monotonic() - started)


async def run_worker(args):
    raise_fd_limit()
    clients, errors = await connect_many(args, args.count, None, args.parallel)
    print(json.dumps({"connected": len(clients), "errors": dict(errors)}), flush=True)
    go = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if go.strip() != "go":
        return
    latencies = []
    await asyncio.gather(*(transactions(c, args.txns, args.spread, latencies, errors)
                           for c in clients))
    for client in clients:
        client.close()
    print(json.dumps({"latencies": latencies, "errors": dict(errors)}), flush=True)


async def sample_rss(pid, peak, stop):
    """Samples VmRSS until STOP is set; the maximum lands in PEAK[0]."""
    while not stop.is_set():
        peak[0] = max(peak[0], vm_status(pid, "VmRSS") or 0)
        try:
            await asyncio.wait_for(stop.wait(), 0.05)
        except asyncio.TimeoutError:
            pass


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def spawn_workers(args):
    shares = [args.clients // args.procs + (i < args.clients % args.procs)
              for i in range(args.procs)]
    common = ["--port", str(args.port), "--user", args.user, "--dbname", args.dbname,
              "--pid", str(args.pid), "--parallel", str(args.parallel)]
    return [await asyncio.create_subprocess_exec(
        sys.executable, __file__, "worker", "--count", str(n), "--txns", str(args.txns),
        "--spread", str(args.spread), *common,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        limit=1 << 26) for n in shares]


async def run_scale(args):
    peak, stop = [0], asyncio.Event()
    sampler = asyncio.create_task(sample_rss(args.pid, peak, stop))
    rss_start = vm_status(args.pid, "VmRSS")
    started = time.monotonic()
    workers = await spawn_workers(args)
    hellos = [json.loads(await w.stdout.readline() or b"{}") for w in workers]
    connected = sum(h.get("connected", 0) for h in hellos)
    connect_seconds = time.monotonic() - started
    rss_connected = vm_status(args.pid, "VmRSS")
    for worker in workers:
        worker.stdin.write(b"go\n")
        await worker.stdin.drain()
    tx_started = time.monotonic()
    results = [json.loads(await w.stdout.readline() or b"{}") for w in workers]
    tx_seconds = time.monotonic() - tx_started
    for worker in workers:
        await worker.wait()
    stop.set()
    await sampler
    errors = collections.Counter()
    for part in hellos + results:
        errors.update(part.get("errors", {}))
    latencies = sorted(x for r in results for x in r.get("latencies", []))
    print(json.dumps({
        "clients": args.clients, "connected": connected, "transactions": len(latencies),
        "expected_transactions": args.clients * args.txns,
        "errors": sum(errors.values()), "error_kinds": dict(errors.most_common(10)),
        "p50_ms": percentile(latencies, 0.50) and percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) and percentile(latencies, 0.99) * 1000,
        "rss_start": rss_start, "rss_connected": rss_connected, "rss_peak": peak[0],
        "vm_hwm": vm_status(args.pid, "VmHWM"), "connect_seconds": round(connect_seconds, 2),
        "tx_seconds": round(tx_seconds, 2),
        "wall_seconds": round(time.monotonic() - started, 2),
    }))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["idle", "scale", "worker"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="app")
    parser.add_argument("--dbname", default="app")
    parser.add_argument("--password", default=os.environ.get("PGPASSWORD", ""))
    parser.add_argument("--pid", type=int, required=True, help="pooler process id (for RSS)")
    parser.add_argument("--parallel", type=int, default=64, help="handshakes in flight")
    parser.add_argument("--count", type=int, default=2000, help="idle/worker: clients")
    parser.add_argument("--tls", action="store_true", help="idle: SSLRequest then TLS")
    parser.add_argument("--cafile", help="idle --tls: the pooler's certificate")
    parser.add_argument("--batch", type=int, default=0, help="idle: clients per batch (0: all)")
    parser.add_argument("--batch-wait", type=float, default=2.5,
                        help="idle --batch: seconds of silence after each batch")
    parser.add_argument("--clients", type=int, default=10000, help="scale: clients in total")
    parser.add_argument("--procs", type=int, default=2, help="scale: worker processes")
    parser.add_argument("--txns", type=int, default=3, help="scale: transactions per client")
    parser.add_argument("--spread", type=float, default=10.0,
                        help="scale: seconds over which each client's transactions fall")
    return parser.parse_args()


def main():
    args = parse_args()
    runner = {"idle": run_idle, "scale": run_scale, "worker": run_worker}[args.mode]
    asyncio.run(runner(args))


if __name__ == "__main__":
    main()
