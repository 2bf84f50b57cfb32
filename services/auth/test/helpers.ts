import { createSilentLogger, startServer, type RunningServer } from '@gatehouse/common';
import { createTestDatabase, type TestDatabase } from '@gatehouse/testing';
import { createApp } from '../src/app';
import { createDb, migrateDb, type Db } from '../src/db/create-db';
import { loadSigningKeys, type KeyStore } from '../src/services/signing-keys';

export interface AuthHarness {
  url: string;
  db: Db;
  keys: KeyStore;
  testDb: TestDatabase;
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  close(): Promise<void>;
}

export const TEST_CONFIG = { issuer: 'gatehouse-test', audience: 'gatehouse-test', accessTokenTtlSeconds: 900, bcryptCost: 4 };

/** The real auth app on port 0 over a fresh, migrated database of its own. */
export async function startAuth(): Promise<AuthHarness> {
  const testDb = await createTestDatabase();
  const db = createDb({ databaseUrl: testDb.databaseUrl, dataDir: testDb.dataDir ?? 'memory://', poolMax: 5 });
  const logger = createSilentLogger();
  await migrateDb(db.knex);
  const keys = await loadSigningKeys(db.knex, logger);
  const running: RunningServer = await startServer(createApp({ config: TEST_CONFIG, knex: db.knex, keys, logger }), { port: 0 });
  return {
    url: running.url,
    db,
    keys,
    testDb,
    post: (path, body, headers = {}) =>
      fetch(`${running.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      }),
    async close() {
      await running.close();
      await db.close();
      await testDb.drop();
    },
  };
}
