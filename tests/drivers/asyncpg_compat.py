"""asyncpg in transaction mode: its default statement cache (every query is a named prepared
statement, reused across transactions), executemany, `fetch(timeout=...)` whose expiry makes
asyncpg send a cancel request, explicit `conn.prepare` and portal cursors. See drvcommon.py."""

import asyncio
import time

import asyncpg

from drvcommon import CLIENTS, ROUNDS, Runner, conn_params, each_client, expect_eq, tag

TABLE = f"drv_asyncpg_{tag()}"
SLEEP_SECONDS = 20
TIMEOUT_SECONDS = 0.5
# A cancelled pg_sleep(20) must give the connection back well before it would have ended.
RECOVERY_LIMIT_SECONDS = 10


async def connect():
    p = conn_params()
    return await asyncpg.connect(
        host=p["host"], port=p["port"], user=p["user"], password=p["password"],
        database=p["dbname"], ssl=False,
    )


class Rollback(Exception):
    """Raised inside `conn.transaction()` to make it roll back."""


async def with_conn(work):
    conn = await connect()
    try:
        return await work(conn)
    finally:
        await conn.close()


async def setup():
    async def work(conn):
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await conn.execute(f"CREATE TABLE {TABLE} (client int, n int)")
    await with_conn(work)
    return f"table {TABLE} created"


async def statement_cache():
    async def work(conn, i):
        for r in range(ROUNDS * 2):
            async with conn.transaction():
                got = await conn.fetchval("SELECT $1::int * 1000 + $2::int", i, r)
                expect_eq(got, i * 1000 + r, "cached statement in a transaction")
            rows = await conn.fetch("SELECT $1::text AS t, g FROM generate_series(1, 3) g", f"c{i}")
            expect_eq([(row["t"], row["g"]) for row in rows], [(f"c{i}", g) for g in (1, 2, 3)], "cached statement outside")

    await each_client(CLIENTS, lambda i: with_conn(lambda c: work(c, i)))
    return f"{CLIENTS} clients x {ROUNDS * 2} rounds of 2 cached statements"


async def executemany():
    async def work(conn, i):
        await conn.executemany(f"INSERT INTO {TABLE} (client, n) VALUES ($1, $2)", [(i, n) for n in range(50)])
        try:
            async with conn.transaction():
                await conn.executemany(f"INSERT INTO {TABLE} (client, n) VALUES ($1, $2)", [(i, n) for n in range(50)])
                raise Rollback()
        except Rollback:
            pass
        async with conn.transaction():
            await conn.executemany(f"INSERT INTO {TABLE} (client, n) VALUES ($1, $2)", [(i, -n) for n in range(1, 11)])
        got = await conn.fetchval(f"SELECT count(*)::int FROM {TABLE} WHERE client = $1", i)
        expect_eq(got, 60, "rows after executemany (autocommit + rolled back + committed)")

    await each_client(CLIENTS, lambda i: with_conn(lambda c: work(c, i)))
    return f"{CLIENTS} clients: executemany autocommit, rolled back and committed"


async def cancel_by_timeout(conn, i):
    start = time.monotonic()
    try:
        await conn.fetch(f"SELECT pg_sleep({SLEEP_SECONDS})", timeout=TIMEOUT_SECONDS)
    except asyncio.TimeoutError:
        pass
    else:
        raise AssertionError("pg_sleep returned before the client-side timeout")
    expect_eq(await conn.fetchval("SELECT $1::int + 1", i), i + 1, "query after the cancel")
    took = time.monotonic() - start
    if took > RECOVERY_LIMIT_SECONDS:
        raise AssertionError(f"connection usable only after {took:.1f}s: the cancel did not stop pg_sleep")
    async with conn.transaction():
        expect_eq(await conn.fetchval("SELECT 7"), 7, "transaction after the cancel")


async def cancel_one():
    await with_conn(lambda c: cancel_by_timeout(c, 0))
    return f"1 client: pg_sleep({SLEEP_SECONDS}) with timeout={TIMEOUT_SECONDS}s cancelled, connection reused"


async def cancel_many():
    await each_client(CLIENTS, lambda i: with_conn(lambda c: cancel_by_timeout(c, i)))
    return f"{CLIENTS} clients cancelled at once (most queued for a backend), all reused"


async def prepared():
    async def work(conn, i):
        stmt = await conn.prepare("SELECT $1::int + 100 AS v, $2::text AS t")
        for r in range(ROUNDS):
            async with conn.transaction():
                row = await stmt.fetchrow(r, f"c{i}")
                expect_eq((row["v"], row["t"]), (r + 100, f"c{i}"), "prepared statement in a transaction")
            expect_eq(await stmt.fetchval(i, "x"), i + 100, "prepared statement outside a transaction")
        async with conn.transaction():
            total = 0
            async for record in conn.cursor("SELECT g FROM generate_series(1, $1) g", 200 + i, prefetch=30):
                total += record["g"]
        expect_eq(total, (200 + i) * (201 + i) // 2, "sum over a portal cursor")

    await each_client(CLIENTS, lambda i: with_conn(lambda c: work(c, i)))
    return f"{CLIENTS} clients: conn.prepare reused over {ROUNDS} transactions, portal cursor"


async def main():
    runner = Runner("asyncpg")
    await runner.feature("setup", setup)
    await runner.feature("default statement cache across transactions", statement_cache)
    await runner.feature("executemany", executemany)
    await runner.feature("fetch timeout cancel", cancel_one)
    await runner.feature("fetch timeout cancel, concurrent", cancel_many)
    await runner.feature("conn.prepare and cursor", prepared)
    runner.finish()


if __name__ == "__main__":
    asyncio.run(main())
