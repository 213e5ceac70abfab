"""Session state in transaction mode, driven with psycopg 3: SET outside a transaction and
startup parameters observed by later transactions while other clients hop backends; a session
advisory lock held across transactions; LISTEN/NOTIFY delivery; temp tables that survive
across transactions of their session and do not leak to other sessions. See drvcommon.py."""

import asyncio

import psycopg

from drvcommon import CLIENTS, ROUNDS, Runner, conn_params, each_client, expect_eq, tag, tag_number

LOCK_KEY = tag_number(770000)
CHANNEL = f"drv_chan_{tag()}"
NOTIFICATIONS = 5
SETTINGS = ("application_name", "TimeZone", "search_path", "statement_timeout")


async def connect(**options):
    return await psycopg.AsyncConnection.connect(**conn_params(), autocommit=True, **options)


async def one(conn, query, params=None):
    cur = await conn.execute(query, params)
    return (await cur.fetchone())[0]


async def settings_in_tx(conn):
    async with conn.transaction():
        cur = await conn.execute("SELECT " + ", ".join(f"current_setting('{s}')" for s in SETTINGS))
        return dict(zip(SETTINGS, await cur.fetchone()))


async def settings_by_show(conn):
    return {s: await one(conn, f"SHOW {s}") for s in SETTINGS}


async def observe(conn, want, what):
    for r in range(ROUNDS):
        got = await (settings_in_tx(conn) if r % 2 == 0 else settings_by_show(conn))
        expect_eq(got, want, f"{what}, round {r}")


async def set_outside_transaction():
    everyone_set = asyncio.Barrier(CLIENTS)

    async def client(i):
        want = {
            "application_name": f"drv_app_{i}",
            "TimeZone": f"Etc/GMT+{i % 12}",
            "search_path": f"drv_sp_{i}, public",
            "statement_timeout": f"{1001 + i}ms",
        }
        async with await connect() as conn:
            for name, value in want.items():
                await conn.execute(f"SET {name} = {value}" if name == "search_path" else f"SET {name} = '{value}'")
            await everyone_set.wait()
            await observe(conn, want, "after SET")
            async with conn.transaction():
                await conn.execute("SET LOCAL statement_timeout = '7777ms'")
                expect_eq(await one(conn, "SHOW statement_timeout"), "7777ms", "SET LOCAL inside")
            async with conn.transaction():
                await conn.execute(f"SET application_name = 'drv_rolled_back_{i}'")
                raise psycopg.Rollback()
            async with conn.transaction():
                await conn.execute(f"SET application_name = 'drv_committed_{i}'")
            want["application_name"] = f"drv_committed_{i}"
            await conn.execute("RESET statement_timeout")
            want["statement_timeout"] = "0"
            await observe(conn, want, "after SET LOCAL, rolled back SET, committed SET, RESET")
            expect_eq(conn.info.parameter_status("application_name"), want["application_name"], "ParameterStatus application_name")

    await each_client(CLIENTS, client)
    return f"{CLIENTS} clients x {ROUNDS} checks of {', '.join(SETTINGS)} (+ SET LOCAL, rollback, RESET)"


async def startup_parameters():
    async def client(i):
        want = {
            "application_name": f"drv_start_{i}",
            "TimeZone": f"Etc/GMT-{i % 12}",
            "search_path": f"drv_opt_{i},public",
            "statement_timeout": f"{2001 + i}ms",
        }
        options = f"-c search_path=drv_opt_{i},public -c statement_timeout={2001 + i}ms -c TimeZone=Etc/GMT-{i % 12}"
        async with await connect(application_name=want["application_name"], options=options) as conn:
            await observe(conn, want, "startup parameters")

    await each_client(CLIENTS, client)
    return f"{CLIENTS} clients with application_name and options=-c ... at startup"


async def with_background_load(scenario):
    """Runs `scenario` while CLIENTS-2 other clients keep running short transactions, so the
    pool's backends keep changing hands."""
    stop = asyncio.Event()
    transactions = 0

    async def filler(i):
        nonlocal transactions
        async with await connect() as conn:
            while not stop.is_set():
                async with conn.transaction():
                    expect_eq(await one(conn, "SELECT %s::int", (i,)), i, "background query")
                transactions += 1

    async def run_then_stop():
        try:
            return await scenario()
        finally:
            stop.set()

    fillers = asyncio.gather(*(filler(i) for i in range(max(CLIENTS - 2, 0))))
    result, _ = await asyncio.gather(run_then_stop(), fillers)
    return f"{result}; {transactions} background transactions meanwhile"


async def advisory_lock():
    async def scenario():
        async with await connect() as a, await connect() as b:
            await one(a, "SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            for r in range(ROUNDS):
                async with a.transaction():
                    expect_eq(await one(a, "SELECT %s::int", (r,)), r, "holder's transaction")
                expect_eq(await one(b, "SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)), False, f"B's try while A holds it, round {r}")
            expect_eq(await one(a, "SELECT pg_advisory_unlock(%s)", (LOCK_KEY,)), True, "A unlocks")
            expect_eq(await one(b, "SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)), True, "B's try after A unlocked")
            expect_eq(await one(b, "SELECT pg_advisory_unlock(%s)", (LOCK_KEY,)), True, "B unlocks")
        return f"lock {LOCK_KEY} held by A over {ROUNDS} transactions, B refused {ROUNDS} times then got it"

    return await with_background_load(scenario)


async def listen_notify():
    async def scenario():
        async with await connect() as a, await connect() as b:
            await a.execute(f"LISTEN {CHANNEL}")
            for k in range(NOTIFICATIONS):
                async with a.transaction():
                    expect_eq(await one(a, "SELECT %s::int", (k,)), k, "listener's transaction")
                await b.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"msg-{k}"))
            received = []
            async for note in a.notifies(timeout=30):
                received.append((note.channel, note.payload))
                if len(received) >= NOTIFICATIONS:
                    break
            want = [(CHANNEL, f"msg-{k}") for k in range(NOTIFICATIONS)]
            expect_eq(received, want, "notifications received by the listener")
        return f"{NOTIFICATIONS} notifications delivered in order to a listener running transactions"

    return await with_background_load(scenario)


async def temp_tables():
    async def client(i):
        async with await connect() as conn:
            await conn.execute("CREATE TEMP TABLE drv_tmp (v int)")
            for r in range(ROUNDS):
                async with conn.transaction():
                    await conn.execute("INSERT INTO drv_tmp VALUES (%s)", (r,))
                    expect_eq(await one(conn, "SELECT count(*)::int FROM drv_tmp"), r + 1, f"temp rows, round {r}")
            expect_eq(await one(conn, "SELECT sum(v)::int FROM drv_tmp"), ROUNDS * (ROUNDS - 1) // 2, "temp table sum")

    await each_client(CLIENTS, client)

    async def fresh(i):
        async with await connect() as conn:
            for r in range(3):
                async with conn.transaction():
                    expect_eq(await one(conn, "SELECT to_regclass('drv_tmp')::text"), None, "temp table of an ended session seen by a new one")

    await each_client(CLIENTS, fresh)
    return f"{CLIENTS} clients kept a temp table over {ROUNDS} transactions; none leaked to new sessions"


async def main():
    runner = Runner("session")
    await runner.feature("SET outside a transaction", set_outside_transaction)
    await runner.feature("startup parameters", startup_parameters)
    await runner.feature("session advisory lock", advisory_lock)
    await runner.feature("LISTEN/NOTIFY", listen_notify)
    await runner.feature("temp table across transactions", temp_tables)
    runner.finish()


if __name__ == "__main__":
    asyncio.run(main())
