import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Where a test's database lives; pass these to the auth service's `createDb`. */
export interface TestDatabase {
  kind: 'postgres' | 'pglite';
  /** Set for PostgreSQL: a fresh database of its own. */
  databaseUrl?: string;
  /** Set for PGlite: `memory://` (nothing on disk). */
  dataDir?: string;
  /** Drops the database (PostgreSQL); call after the app's pool is closed. */
  drop(): Promise<void>;
}

/** True when this test run should use the embedded database. */
export function usesPglite(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.GATEHOUSE_TEST_DB === 'pglite' || !env.TEST_DATABASE_URL;
}

/**
 * A fresh, empty database for one test file: on the PostgreSQL server of `TEST_DATABASE_URL`
 * a new database (created here, dropped by `drop()`), else an in-memory PGlite.
 */
export async function createTestDatabase(env: NodeJS.ProcessEnv = process.env): Promise<TestDatabase> {
  const serverUrl = env.TEST_DATABASE_URL;
  if (usesPglite(env) || !serverUrl) {
    return { kind: 'pglite', dataDir: 'memory://', drop: async () => {} };
  }
  const name = `gatehouse_test_${randomBytes(6).toString('hex')}`;
  await withAdminClient(serverUrl, (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    kind: 'postgres',
    databaseUrl: url.toString(),
    drop: () => withAdminClient(serverUrl, (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}

async function withAdminClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}
