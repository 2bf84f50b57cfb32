import { createSilentLogger, startServer, type RunningServer } from '@gatehouse/common';
import { buildUser, createTestDatabase, readJson, type Json, type TestDatabase, type UserInput } from '@gatehouse/testing';
import type { RoleName } from '@gatehouse/tokens';
import { createApp, type AppDeps } from '../src/app';
import { createDb, migrateDb, type Db } from '../src/db/create-db';
import { createAdminService } from '../src/services/admin.service';
import { DEFAULT_THROTTLE } from '../src/services/signin-throttle';
import { createKeyStore, ensureSigningKey, type KeyStore } from '../src/services/signing-keys';

export const TEST_CONFIG: AppDeps['config'] = {
  issuer: 'gatehouse-test',
  audience: 'gatehouse-test',
  accessTokenTtlSeconds: 900,
  refreshTokenTtlSeconds: 7 * 24 * 3600,
  refreshReuseIntervalSeconds: 0,
  bcryptCost: 4,
  trustProxy: true,
  // Off here: the suites make many failed sign-ins from one address on purpose. The throttle
  // has its own suite (signin-throttle.int.test.ts) with it on.
  signinThrottle: { ...DEFAULT_THROTTLE, maxFailures: 0 },
};

/** A clock the test moves by hand; starts at the real now. */
export interface TestClock {
  now: () => Date;
  advance(seconds: number): void;
}

export function createTestClock(): TestClock {
  let ms = Date.now();
  return {
    now: () => new Date(ms),
    advance(seconds) {
      ms += seconds * 1000;
    },
  };
}

/** A signed-in user: what sign-in answered, plus the password it used. */
export interface SignedIn {
  id: number;
  username: string;
  password: string;
  accessToken: string;
  refreshToken: string;
  body: Json;
}

export interface AuthHarness {
  url: string;
  db: Db;
  keys: KeyStore;
  testDb: TestDatabase;
  clock: TestClock;
  post(path: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  /** A request with `token` as a bearer token (when given) and a JSON body (when given). */
  call(method: string, path: string, options?: { token?: string; body?: unknown }): Promise<{ status: number; body: Json }>;
  /** Signs up a fresh user, gives it `roles` (through the admin service) and signs it in. */
  signedInUser(roles?: RoleName[], overrides?: Partial<UserInput>): Promise<SignedIn>;
  close(): Promise<void>;
}

/**
 * The real auth app on port 0 over a fresh, migrated database of its own, with a hand-driven
 * clock. `config` overrides `TEST_CONFIG`; `bcrypt` is where password work runs (this thread
 * when not given).
 */
export async function startAuth(options: { config?: Partial<AppDeps['config']>; bcrypt?: AppDeps['bcrypt'] } = {}): Promise<AuthHarness> {
  const config = { ...TEST_CONFIG, ...options.config };
  const clock = createTestClock();
  const testDb = await createTestDatabase();
  // A generous acquire timeout: test files run in parallel on few cores, and a burst test
  // must measure the code, not the machine.
  const db = createDb({ databaseUrl: testDb.databaseUrl, dataDir: testDb.dataDir ?? 'memory://', poolMax: 10, acquireTimeoutMs: 15_000 });
  const logger = createSilentLogger();
  await migrateDb(db.knex);
  await ensureSigningKey(db.knex, { logger, clock: clock.now });
  const keys = await createKeyStore(db.knex, { logger, clock: clock.now, accessTokenTtlSeconds: config.accessTokenTtlSeconds });
  const app = createApp({ config, knex: db.knex, keys, logger, clock: clock.now, bcrypt: options.bcrypt });
  const running: RunningServer = await startServer(app, { port: 0 });
  const admin = createAdminService({ knex: db.knex, clock: clock.now });

  const post: AuthHarness['post'] = (path, body, headers = {}) =>
    fetch(`${running.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });

  const call: AuthHarness['call'] = async (method, path, { token, body } = {}) => {
    const headers: Record<string, string> = {};
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${running.url}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };

  return {
    url: running.url,
    db,
    keys,
    testDb,
    clock,
    post,
    call,
    async signedInUser(roles = ['user'], overrides = {}) {
      const user = buildUser(overrides);
      const signUp = await post('/api/auth/signup', user);
      if (signUp.status !== 201) throw new Error(`sign-up answered ${signUp.status}`);
      const row: { id: number } = await db.knex('users').whereRaw('lower(username) = lower(?)', [user.username]).first('id');
      if (roles.join() !== 'user') await admin.setRoles(row.id, roles, {});
      const res = await post('/api/auth/signin', { username: user.username, password: user.password });
      const body = await readJson(res);
      if (res.status !== 200) throw new Error(`sign-in answered ${res.status}: ${JSON.stringify(body)}`);
      return { id: body.id, username: user.username, password: user.password, accessToken: body.accessToken, refreshToken: body.refreshToken, body };
    },
    async close() {
      await running.close();
      await db.close();
      await testDb.drop();
    },
  };
}
