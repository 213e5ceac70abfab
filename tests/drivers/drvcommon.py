"""Shared plumbing for the Python driver compatibility scripts run by tests/drivers.rs.

Each script runs a list of features; every feature drives many concurrent client connections
(each with its own connection) so that, behind pgferry with a small transaction-mode pool,
clients hop between backends. A feature prints one `ok`/`FAIL` line; the script exits non-zero
when any feature failed, so the Rust test can assert on the exit status and show the output.

Connection settings come from the libpq environment variables (PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGDATABASE); PGF_TAG keeps object names apart when the same script runs against
pgferry and directly against PostgreSQL at the same time.
"""

import asyncio
import os
import re
import sys
import time
import zlib

CLIENTS = int(os.environ.get("PGF_CLIENTS", "20"))
ROUNDS = int(os.environ.get("PGF_ROUNDS", "10"))
FEATURE_TIMEOUT = float(os.environ.get("PGF_FEATURE_TIMEOUT", "120"))


class CheckFailed(Exception):
    """A result differed from what PostgreSQL itself returns."""


def _require_env(name):
    value = os.environ.get(name)
    if not value:
        print(f"error: environment variable {name} is not set", file=sys.stderr)
        sys.exit(2)
    return value


def conn_params():
    """Host, port, user, password and database of the server under test."""
    return {
        "host": _require_env("PGHOST"),
        "port": int(_require_env("PGPORT")),
        "user": _require_env("PGUSER"),
        "password": _require_env("PGPASSWORD"),
        "dbname": _require_env("PGDATABASE"),
    }


def tag():
    """A suffix for table/channel names, unique per run target."""
    return re.sub(r"[^a-z0-9_]", "_", os.environ.get("PGF_TAG", "t").lower())


def tag_number(base):
    """A number derived from the tag, for advisory lock keys that must not collide."""
    return base + zlib.crc32(tag().encode()) % 100000


def expect_eq(got, want, what):
    """Fails the feature with both values when they differ."""
    if got != want:
        raise CheckFailed(f"{what}: got {got!r}, expected {want!r}")


async def each_client(count, client):
    """Runs `client(i)` for i in 0..count concurrently; fails naming the first failing client."""
    results = await asyncio.gather(*(client(i) for i in range(count)), return_exceptions=True)
    errors = [(i, e) for i, e in enumerate(results) if isinstance(e, BaseException)]
    if errors:
        i, e = errors[0]
        raise CheckFailed(
            f"{len(errors)}/{count} clients failed; client {i}: {type(e).__name__}: {e}"
        )


class Runner:
    """Runs features one after another, printing one summary line per feature."""

    def __init__(self, script):
        self.script = script
        self.passed = 0
        self.failed = []

    async def feature(self, name, run):
        start = time.monotonic()
        try:
            detail = await asyncio.wait_for(run(), FEATURE_TIMEOUT)
        except asyncio.TimeoutError:
            self._fail(name, f"timed out after {FEATURE_TIMEOUT:.0f}s")
        except Exception as e:  # every failure is reported, the next feature still runs
            self._fail(name, f"{type(e).__name__}: {e}".strip())
        else:
            self.passed += 1
            took = time.monotonic() - start
            print(f"ok   {self.script}: {name}: {detail} ({took:.1f}s)", flush=True)

    def _fail(self, name, why):
        self.failed.append(name)
        print(f"FAIL {self.script}: {name}: {why}", flush=True)

    def finish(self):
        """Prints the totals and exits: status 1 when any feature failed."""
        print(
            f"{self.script}: {self.passed} features ok, {len(self.failed)} failing"
            + (f" ({', '.join(self.failed)})" if self.failed else ""),
            flush=True,
        )
        sys.exit(1 if self.failed else 0)
