'use strict';
// node-postgres (`pg`) in transaction mode: named queries (`name:` = a named prepared statement
// that pg parses once per connection and then only binds) reused across transactions, plain
// parameterized queries, and explicit transactions. Connection settings come from PGHOST,
// PGPORT, PGUSER, PGPASSWORD, PGDATABASE; PGF_TAG keeps table names apart. One ok/FAIL line per
// feature; exit status 1 when any feature failed.

const { Client } = require('pg');

const CLIENTS = Number(process.env.PGF_CLIENTS || 20);
const ROUNDS = Number(process.env.PGF_ROUNDS || 10);
const FEATURE_TIMEOUT_MS = Number(process.env.PGF_FEATURE_TIMEOUT || 120) * 1000;
const TAG = (process.env.PGF_TAG || 't').toLowerCase().replace(/[^a-z0-9_]/g, '_');
const TABLE = `drv_node_${TAG}`;

function requireEnv(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`error: environment variable ${name} is not set`);
    process.exit(2);
  }
  return value;
}

function connParams() {
  return {
    host: requireEnv('PGHOST'),
    port: Number(requireEnv('PGPORT')),
    user: requireEnv('PGUSER'),
    password: requireEnv('PGPASSWORD'),
    database: requireEnv('PGDATABASE'),
    ssl: false,
  };
}

function expectEq(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    throw new Error(`${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
}

async function withClient(work) {
  const client = new Client(connParams());
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function eachClient(work) {
  const results = await Promise.allSettled(
    Array.from({ length: CLIENTS }, (_, i) => withClient((c) => work(c, i))),
  );
  const failed = results.map((r, i) => [r, i]).filter(([r]) => r.status === 'rejected');
  if (failed.length > 0) {
    const [first, i] = failed[0];
    throw new Error(`${failed.length}/${CLIENTS} clients failed; client ${i}: ${first.reason}`);
  }
}

async function countRows(client, i, val) {
  const res = await client.query(`SELECT count(*)::int AS n FROM ${TABLE} WHERE client = $1 AND val = $2`, [i, val]);
  return res.rows[0].n;
}

async function setup() {
  await withClient(async (c) => {
    await c.query(`DROP TABLE IF EXISTS ${TABLE}`);
    await c.query(`CREATE TABLE ${TABLE} (client int, n int, val text)`);
  });
  return `table ${TABLE} created`;
}

async function namedQueries() {
  await eachClient(async (c, i) => {
    for (let r = 0; r < ROUNDS * 2; r++) {
      const inTx = r % 2 === 0;
      if (inTx) await c.query('BEGIN');
      const sum = await c.query({ name: 'drv-sum', text: 'SELECT $1::int * 1000 + $2::int AS v', values: [i, r] });
      expectEq(sum.rows[0].v, i * 1000 + r, 'named query drv-sum');
      const echo = await c.query({ name: 'drv-echo', text: "SELECT $1::text || '/' || $2::text AS s", values: [`c${i}`, String(r)] });
      expectEq(echo.rows[0].s, `c${i}/${r}`, 'named query drv-echo');
      if (inTx) await c.query('COMMIT');
    }
  });
  return `${CLIENTS} clients x ${ROUNDS * 2} rounds of 2 named statements, half in transactions`;
}

async function plainParameterized() {
  await eachClient(async (c, i) => {
    for (let r = 0; r < ROUNDS; r++) {
      const res = await c.query('SELECT $1::text || $2::text AS s, $3::int * 2 AS d', [`c${i}-`, String(r), r]);
      expectEq([res.rows[0].s, res.rows[0].d], [`c${i}-${r}`, r * 2], 'unnamed parameterized query');
    }
  });
  return `${CLIENTS} clients x ${ROUNDS} unnamed parameterized queries`;
}

async function transactions() {
  await eachClient(async (c, i) => {
    await c.query('BEGIN');
    await c.query(`INSERT INTO ${TABLE} (client, val) VALUES ($1, 'rb')`, [i]);
    expectEq(await countRows(c, i, 'rb'), 1, 'row visible inside its transaction');
    await c.query('ROLLBACK');
    expectEq(await countRows(c, i, 'rb'), 0, 'row after ROLLBACK');
    await c.query('BEGIN');
    await c.query({ name: 'drv-insert', text: `INSERT INTO ${TABLE} (client, val) VALUES ($1, 'cm')`, values: [i] });
    await c.query('COMMIT');
    expectEq(await countRows(c, i, 'cm'), 1, 'row after COMMIT');
    await c.query('BEGIN');
    await c.query('SELECT 1 / 0').then(
      () => { throw new Error('division by zero did not fail'); },
      (e) => expectEq(e.code, '22012', 'SQLSTATE of the failed statement'),
    );
    await c.query('SELECT 1').then(
      () => { throw new Error('statement in an aborted transaction did not fail'); },
      (e) => expectEq(e.code, '25P02', 'SQLSTATE in an aborted transaction'),
    );
    await c.query('ROLLBACK');
    const res = await c.query({ name: 'drv-sum', text: 'SELECT $1::int * 1000 + $2::int AS v', values: [i, 1] });
    expectEq(res.rows[0].v, i * 1000 + 1, 'named query after a failed transaction');
  });
  return `${CLIENTS} clients: rollback, commit, error inside a transaction`;
}

async function feature(failures, name, run) {
  const start = Date.now();
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${FEATURE_TIMEOUT_MS / 1000}s`)), FEATURE_TIMEOUT_MS);
  });
  try {
    const detail = await Promise.race([run(), timeout]);
    console.log(`ok   node-pg: ${name}: ${detail} (${((Date.now() - start) / 1000).toFixed(1)}s)`);
  } catch (e) {
    failures.push(name);
    console.log(`FAIL node-pg: ${name}: ${e && e.message ? e.message : e}`);
  } finally {
    clearTimeout(timer);
  }
}

async function main() {
  const failures = [];
  const features = [
    ['setup', setup],
    ['named statements across transactions', namedQueries],
    ['plain parameterized queries', plainParameterized],
    ['transactions', transactions],
  ];
  for (const [name, run] of features) await feature(failures, name, run);
  const ok = features.length - failures.length;
  console.log(`node-pg: ${ok} features ok, ${failures.length} failing${failures.length ? ` (${failures.join(', ')})` : ''}`);
  process.exit(failures.length ? 1 : 0);
}

main();
