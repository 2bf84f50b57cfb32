import { generateKeyPairSync } from 'node:crypto';
import { createSilentLogger, startServer, type RunningServer } from '@gatehouse/common';
import { buildUser, freePort, readJson } from '@gatehouse/testing';
import { createApp } from '../src/app';
import { createDb, type Db } from '../src/db/create-db';
import type { KeyStore } from '../src/services/signing-keys';
import { TEST_CONFIG } from './helpers';

// A database that cannot be reached is a 503 with a clear message, not a 500.
describe('auth with its PostgreSQL server unreachable', () => {
  let db: Db;
  let server: RunningServer;

  beforeAll(async () => {
    db = createDb({ databaseUrl: `postgres://postgres@127.0.0.1:${await freePort()}/none`, dataDir: 'unused', poolMax: 2 });
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const keys: KeyStore = {
      current: { kid: 'test-key', privateKey },
      publicJwks: async () => ({ keys: [] }),
      getKey: async () => undefined,
      knownKey: () => undefined,
      reload: async () => undefined,
      startReloading: () => () => undefined,
    };
    server = await startServer(createApp({ config: TEST_CONFIG, knex: db.knex, keys, logger: createSilentLogger() }), { port: 0 });
  });

  afterAll(async () => {
    await server.close();
    await db.close();
  });

  it('[POST /api/auth/signin] returns 503 service.unavailable', async () => {
    const user = buildUser();
    const res = await fetch(`${server.url}/api/auth/signin`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: user.username, password: user.password }),
    });
    expect(res.status).toBe(503);
    expect(await readJson(res)).toMatchObject({ code: 'service.unavailable' });
  });

  it('[GET /readyz] answers 503 naming the database', async () => {
    const res = await fetch(`${server.url}/readyz`);
    expect(res.status).toBe(503);
    expect(await readJson(res)).toEqual({ status: 'unready', checks: { database: 'failing' } });
  });
});
