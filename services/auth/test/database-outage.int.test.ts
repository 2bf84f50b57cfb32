import net from 'node:net';
import { createSilentLogger, startServer, type RunningServer } from '@gatehouse/common';
import { buildUser, createTestDatabase, readJson, type TestDatabase } from '@gatehouse/testing';
import { createApp } from '../src/app';
import { createDb, migrateDb, type Db } from '../src/db/create-db';
import { createKeyStore, ensureSigningKey } from '../src/services/signing-keys';
import { TEST_CONFIG } from './helpers';

// The auth service's database goes away and comes back, behind a TCP proxy the test controls
// (never the machine's shared PostgreSQL server itself): requests fail fast with 503 while it is
// away, /readyz says so, and the service recovers by itself once it is back.

/** A TCP proxy to PostgreSQL that can cut every connection and refuse or swallow new ones. */
interface Switch {
  port: number;
  /** 'up' forwards; 'down' resets connections; 'blackhole' accepts and never answers. */
  mode: 'up' | 'down' | 'blackhole';
  cut(): void;
  close(): Promise<void>;
}

async function startSwitch(target: { host: string; port: number }): Promise<Switch> {
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  const server = net.createServer((client) => {
    track(client);
    client.on('error', () => undefined);
    if (state.mode === 'down') return client.resetAndDestroy();
    if (state.mode === 'blackhole') return;
    const upstream = net.connect(target.port, target.host);
    track(upstream);
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const state: Switch = {
    port: typeof address === 'object' && address ? address.port : 0,
    mode: 'up',
    cut() {
      for (const socket of sockets) socket.destroy();
    },
    async close() {
      this.cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return state;
}

const describeOnPostgres = process.env.TEST_DATABASE_URL && process.env.GATEHOUSE_TEST_DB !== 'pglite' ? describe : describe.skip;

describeOnPostgres('auth while its PostgreSQL server goes away and comes back', () => {
  let testDb: TestDatabase;
  let pgSwitch: Switch;
  let db: Db;
  let server: RunningServer;
  const user = buildUser();

  beforeAll(async () => {
    testDb = await createTestDatabase();
    const direct = new URL(testDb.databaseUrl ?? '');
    pgSwitch = await startSwitch({ host: direct.hostname, port: Number(direct.port || 5432) });
    const viaSwitch = new URL(direct);
    viaSwitch.host = `127.0.0.1:${pgSwitch.port}`;
    db = createDb({ databaseUrl: viaSwitch.toString(), dataDir: 'unused', poolMax: 4, acquireTimeoutMs: 500, statementTimeoutMs: 2_000 });
    const logger = createSilentLogger();
    await migrateDb(db.knex);
    await ensureSigningKey(db.knex, { logger, clock: () => new Date() });
    const keys = await createKeyStore(db.knex, { logger, clock: () => new Date(), accessTokenTtlSeconds: 900 });
    server = await startServer(createApp({ config: TEST_CONFIG, knex: db.knex, keys, logger }), { port: 0 });
  });

  afterAll(async () => {
    await server?.close(1_000);
    await db?.close();
    await pgSwitch?.close();
    await testDb?.drop();
  });

  // Every call is bounded: a request that hangs fails the test instead of the suite timing out.
  const call = (path: string, body?: unknown) =>
    fetch(`${server.url}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
  const signIn = () => call('/api/auth/signin', { username: user.username, password: user.password });

  it('works normally while the database is up', async () => {
    expect((await call('/api/auth/signup', user)).status).toBe(201);
    expect((await signIn()).status).toBe(200);
    expect((await call('/readyz')).status).toBe(200);
  });

  it.each(['down', 'blackhole'] as const)('answers 503 service.unavailable, not a hang or a 500, while the database is %s', async (mode) => {
    pgSwitch.mode = mode;
    pgSwitch.cut();
    const res = await signIn();
    expect(res.status).toBe(503);
    expect(await readJson(res)).toMatchObject({ code: 'service.unavailable' });
    const ready = await call('/readyz');
    expect(ready.status).toBe(503);
    expect(await readJson(ready)).toMatchObject({ status: 'unready', checks: { database: 'failing' } });
    expect((await call('/healthz')).status).toBe(200);
  });

  it('recovers by itself once the database is back: no restart, and nothing acknowledged was lost', async () => {
    pgSwitch.mode = 'up';
    const deadline = Date.now() + 20_000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await signIn()).status;
      if (status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(status).toBe(200);
    expect((await call('/readyz')).status).toBe(200);
  });
});
