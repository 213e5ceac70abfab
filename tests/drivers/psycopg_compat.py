"""psycopg 3 in transaction mode: server-side prepared statements (prepare=True and
prepare_threshold=0), pipeline mode, COPY in both directions, named cursors inside
transactions, autocommit and explicit transactions. See drvcommon.py for the conventions."""

import asyncio

import psycopg

from drvcommon import CLIENTS, ROUNDS, Runner, conn_params, each_client, expect_eq, tag

TABLE = f"drv_psycopg_{tag()}"


async def connect(**options):
    return await psycopg.AsyncConnection.connect(**conn_params(), **options)


async def count_rows(conn, client, val):
    cur = await conn.execute(
        f"SELECT count(*)::int FROM {TABLE} WHERE client = %s AND val = %s", (client, val)
    )
    return (await cur.fetchone())[0]


async def setup():
    async with await connect(autocommit=True) as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await conn.execute(f"CREATE TABLE {TABLE} (client int, n int, val text)")
    return f"table {TABLE} created"


async def prepare_true():
    async def client(i):
        async with await connect() as conn:
            for r in range(ROUNDS):
                async with conn.transaction():
                    cur = await conn.execute("SELECT %s::int * 1000 + %s::int", (i, r), prepare=True)
                    expect_eq((await cur.fetchone())[0], i * 1000 + r, "prepared arithmetic")
                    cur = await conn.execute("SELECT %s::text || '/' || %s::text", (f"c{i}", r), prepare=True)
                    expect_eq((await cur.fetchone())[0], f"c{i}/{r}", "prepared concat")

    await each_client(CLIENTS, client)
    return f"{CLIENTS} clients x {ROUNDS} transactions x 2 prepared statements"


async def threshold_zero():
    async def client(i):
        async with await connect(autocommit=True, prepare_threshold=0) as conn:
            for r in range(ROUNDS):
                await conn.execute(
                    f"INSERT INTO {TABLE} (client, n, val) VALUES (%s, %s, 'thr')", (i, r)
                )
                expect_eq(await count_rows(conn, i, "thr"), r + 1, "rows after autocommit insert")
            for r in range(ROUNDS):
                async with conn.transaction():
                    expect_eq(await count_rows(conn, i, "thr"), ROUNDS, "rows inside transaction")

    await each_client(CLIENTS, client)
    return f"{CLIENTS} clients, every statement prepared, autocommit and in transactions"


async def pipeline():
    async def client(i):
        options = {"prepare_threshold": 0} if i % 2 else {}
        async with await connect(autocommit=True, **options) as conn:
            for r in range(ROUNDS // 2):
                async with conn.pipeline():
                    curs = [await conn.execute("SELECT %s::int + %s::int", (i, k)) for k in range(10)]
                for k, cur in enumerate(curs):
                    expect_eq((await cur.fetchone())[0], i + k, "pipelined result")
            async with conn.transaction():
                async with conn.pipeline():
                    for n in range(10):
                        await conn.execute(
                            f"INSERT INTO {TABLE} (client, n, val) VALUES (%s, %s, 'pipe')", (i, n)
                        )
                    cur = await conn.execute(
                        f"SELECT count(*)::int FROM {TABLE} WHERE client = %s AND val = 'pipe'", (i,)
                    )
                expect_eq((await cur.fetchone())[0], 10, "rows inserted by the pipelined transaction")

    await each_client(CLIENTS, client)
    return f"{CLIENTS} clients, 10-query pipelines (half prepared), pipelined transaction"


async def copy():
    async def client(i):
        async with await connect(autocommit=True) as conn:
            async with conn.transaction():
                async with conn.cursor() as cur:
                    async with cur.copy(f"COPY {TABLE} (client, n, val) FROM STDIN") as cp:
                        for n in range(200):
                            await cp.write_row((i, n, "copy"))
            values = []
            async with conn.cursor() as cur:
                query = f"COPY (SELECT n FROM {TABLE} WHERE client = {i} AND val = 'copy' ORDER BY n) TO STDOUT"
                async with cur.copy(query) as cp:
                    async for row in cp.rows():
                        values.append(int(row[0]))
            expect_eq(values, list(range(200)), "rows copied out")
            expect_eq(await count_rows(conn, i, "copy"), 200, "rows after COPY")

    await each_client(CLIENTS, client)
    return f"{CLIENTS} clients x 200 rows COPY FROM STDIN and COPY TO STDOUT"


async def named_cursor():
    async def client(i):
        async with await connect(autocommit=True) as conn:
            for r in range(3):
                limit = 300 + i + r
                async with conn.transaction():
                    async with conn.cursor(name=f"drv_cur_{i}_{r}") as cur:
                        await cur.execute("SELECT g FROM generate_series(1, %s) AS g", (limit,))
                        total = seen = 0
                        while batch := await cur.fetchmany(37):
                            seen += len(batch)
                            total += sum(row[0] for row in batch)
                expect_eq((seen, total), (limit, limit * (limit + 1) // 2), "rows from named cursor")

    await each_client(CLIENTS, client)
    return f"{CLIENTS} clients x 3 transactions fetching a server-side cursor in batches"


async def autocommit_and_transactions():
    async def client(i):
        async with await connect(autocommit=True) as ac, await connect() as tx:
            await ac.execute(f"INSERT INTO {TABLE} (client, val) VALUES (%s, 'ac')", (i,))
            expect_eq(await count_rows(tx, i, "ac"), 1, "autocommit insert seen by another session")
            await tx.rollback()
            async with ac.transaction():
                await ac.execute(f"INSERT INTO {TABLE} (client, val) VALUES (%s, 'rb')", (i,))
                raise psycopg.Rollback()
            await tx.execute(f"INSERT INTO {TABLE} (client, val) VALUES (%s, 'cm')", (i,))
            if i == 0:
                # Waiting on a second connection while holding a transaction needs a second
                # backend: only one client does it, or a pool of 3 could be all held (deadlock).
                expect_eq(await count_rows(ac, i, "cm"), 0, "uncommitted insert is invisible")
            await tx.commit()
            expect_eq(await count_rows(ac, i, "cm"), 1, "committed insert")
            expect_eq(await count_rows(ac, i, "rb"), 0, "rolled back insert")
            try:
                async with tx.transaction():
                    await tx.execute("SELECT 1 / 0")
            except psycopg.errors.DivisionByZero:
                pass
            else:
                raise AssertionError("division by zero did not fail")
            cur = await tx.execute("SELECT %s::int", (i,))
            expect_eq((await cur.fetchone())[0], i, "query after a failed transaction")
            await tx.commit()

    await each_client(CLIENTS, client)
    return f"{CLIENTS} clients: autocommit, commit, rollback, error inside a transaction"


async def main():
    runner = Runner("psycopg")
    await runner.feature("setup", setup)
    await runner.feature("prepare=True across transactions", prepare_true)
    await runner.feature("prepare_threshold=0", threshold_zero)
    await runner.feature("pipeline mode", pipeline)
    await runner.feature("COPY from/to", copy)
    await runner.feature("named cursor in a transaction", named_cursor)
    await runner.feature("autocommit and explicit transactions", autocommit_and_transactions)
    runner.finish()


if __name__ == "__main__":
    asyncio.run(main())
