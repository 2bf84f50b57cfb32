import { createPrivateKey } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { createSilentLogger, startServer } from '@gatehouse/common';
import { createTestDatabase, readJson, type Json } from '@gatehouse/testing';
import { signAccessToken } from '@gatehouse/tokens';
import { createApp } from '../src/app';
import { createDb, migrateDb } from '../src/db/create-db';
import { createKeyStore, ensureSigningKey, keyRetentionSeconds, rotateSigningKey } from '../src/services/signing-keys';
import { startAuth, TEST_CONFIG, type AuthHarness } from './helpers';

// Signing-key rotation against the real auth app and a real database. Every test gets a
// database of its own: which key is active and where the clock stands are per database.

const TTL = TEST_CONFIG.accessTokenTtlSeconds;
const RETENTION = keyRetentionSeconds(TTL);
const logger = createSilentLogger();

let auth: AuthHarness;
/** Taken after startAuth() returned, so the app's key store last (re)loaded before this. */
let startedAt: number;

beforeEach(async () => {
  auth = await startAuth();
  startedAt = Date.now();
});

afterEach(async () => {
  await auth?.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A key store rereads on an unknown kid at most once a second (real time); waits until a
 * store that loaded at `loadedAt` may reread again.
 */
async function pastRereadLimit(loadedAt: number): Promise<void> {
  await sleep(Math.max(0, loadedAt + 1_100 - Date.now()));
}

function kidOf(token: string): string | undefined {
  return jwt.decode(token, { complete: true })?.header.kid;
}

function rotate(options: { removeOld?: boolean; activateAfterSeconds?: number } = {}) {
  return rotateSigningKey(auth.db.knex, { clock: auth.clock.now, accessTokenTtlSeconds: TTL, ...options });
}

async function jwksKids(path = '/.well-known/jwks.json'): Promise<string[]> {
  const body: Json = await readJson(await fetch(`${auth.url}${path}`));
  return body.keys.map((key: Json) => key.kid).sort();
}

const byKid = <T extends { kid: string }>(rows: T[]): T[] => [...rows].sort((a, b) => (a.kid < b.kid ? -1 : 1));

/**
 * The stored keys, sorted by kid as JavaScript sorts (the test clock stands still, so
 * created_at does not order them, and the database's collation may sort kids differently).
 */
async function keyRows(): Promise<{ kid: string; retired_at: Date | null }[]> {
  return byKid(await auth.db.knex('signing_keys').select('kid', 'retired_at'));
}

async function signIn(username: string, password: string): Promise<string> {
  const res = await auth.call('POST', '/api/auth/signin', { body: { username, password } });
  if (res.status !== 200) throw new Error(`sign-in answered ${res.status}`);
  return res.body.accessToken;
}

/**
 * The claims of `token` signed again with the stored key `kid`, valid for `ttlSeconds` from the
 * test clock: a token that only the key can make fail, not its expiry.
 */
async function resign(token: string, kid: string, ttlSeconds: number): Promise<string> {
  const row: { private_key_pem: string } | undefined = await auth.db.knex('signing_keys').where({ kid }).first('private_key_pem');
  if (!row) throw new Error(`no stored key ${kid}`);
  const claims: Json = jwt.decode(token);
  return signAccessToken(
    { id: claims.id, username: claims.username, roles: claims.roles, tokenVersion: claims.ver },
    {
      key: { kid, privateKey: createPrivateKey(row.private_key_pem) },
      issuer: TEST_CONFIG.issuer,
      audience: TEST_CONFIG.audience,
      ttlSeconds,
      nowSeconds: Math.floor(auth.clock.now().getTime() / 1000),
      sessionId: claims.sid,
    },
  ).token;
}

const me = (token: string) => auth.call('GET', '/api/auth/me', { token });

describe('rotateSigningKey', () => {
  it('creates a new active key and retires the old one; after reload() sign-in uses the new kid and the JWKS lists both', async () => {
    const oldKid = auth.keys.current.kid;
    const user = await auth.signedInUser();
    expect(kidOf(user.accessToken)).toBe(oldKid);

    const rotation = await rotate();
    expect(rotation).toEqual({ kid: expect.any(String), activatesAt: auth.clock.now(), retired: [oldKid], removed: [] });
    expect(rotation.kid).not.toBe(oldKid);
    expect(await keyRows()).toEqual(
      byKid([
        { kid: oldKid, retired_at: auth.clock.now() },
        { kid: rotation.kid, retired_at: null },
      ]),
    );

    await auth.keys.reload();
    expect(auth.keys.current.kid).toBe(rotation.kid);
    const fresh = await signIn(user.username, user.password);
    expect(kidOf(fresh)).toBe(rotation.kid);
    expect(await me(fresh)).toMatchObject({ status: 200, body: { id: user.id } });

    const both = [oldKid, rotation.kid].sort();
    expect(await jwksKids()).toEqual(both);
    expect(await jwksKids('/api/auth/.well-known/jwks.json')).toEqual(both);
    const jwks: Json = await readJson(await fetch(`${auth.url}/.well-known/jwks.json`));
    for (const key of jwks.keys) {
      expect(key).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig' });
      for (const privateField of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(key).not.toHaveProperty(privateField);
    }
  });

  it('with activateAfterSeconds publishes the new key at once but signs with the old one until then', async () => {
    const oldKid = auth.keys.current.kid;
    const user = await auth.signedInUser();
    const rotation = await rotate({ activateAfterSeconds: 15 });
    expect(rotation.activatesAt).toEqual(new Date(auth.clock.now().getTime() + 15_000));
    await auth.keys.reload();
    // Verifiers can fetch the new key before any token uses it.
    expect(await jwksKids()).toEqual([oldKid, rotation.kid].sort());
    expect(auth.keys.current.kid).toBe(oldKid);
    expect(kidOf(await signIn(user.username, user.password))).toBe(oldKid);

    auth.clock.advance(14);
    await auth.keys.reload();
    expect(kidOf(await signIn(user.username, user.password))).toBe(oldKid);

    auth.clock.advance(1);
    await auth.keys.reload();
    expect(kidOf(await signIn(user.username, user.password))).toBe(rotation.kid);
    expect(await jwksKids()).toEqual([oldKid, rotation.kid].sort());
  });

  it('keeps accepting a token signed with the retired key at GET /api/auth/me during the retention window', async () => {
    const user = await auth.signedInUser();
    const oldKid = kidOf(user.accessToken);
    const rotation = await rotate();
    await auth.keys.reload();

    expect(await me(user.accessToken)).toMatchObject({ status: 200, body: { id: user.id, username: user.username } });
    // Most of the token's lifetime later, it still verifies: its key is still published.
    auth.clock.advance(TTL - 60);
    await auth.keys.reload();
    expect(await jwksKids()).toEqual([oldKid, rotation.kid].sort());
    expect(await me(user.accessToken)).toMatchObject({ status: 200, body: { id: user.id } });
  });

  it('drops the retired key from the JWKS once keyRetentionSeconds have passed, refuses its tokens, and the next rotation deletes it', async () => {
    const user = await auth.signedInUser();
    const oldKid = auth.keys.current.kid;
    // Longer-lived than any real token, so that only the key can make it fail.
    const byOldKey = await resign(user.accessToken, oldKid, 10 * RETENTION);
    const rotation = await rotate();
    const byNewKey = await resign(user.accessToken, rotation.kid, 10 * RETENTION);
    await auth.keys.reload();
    expect(await me(byOldKey)).toMatchObject({ status: 200 });

    auth.clock.advance(RETENTION - 1);
    await auth.keys.reload();
    expect(await jwksKids()).toEqual([oldKid, rotation.kid].sort());
    expect(await me(byOldKey)).toMatchObject({ status: 200 });

    auth.clock.advance(1);
    await auth.keys.reload();
    expect(await jwksKids()).toEqual([rotation.kid]);
    expect(await me(byOldKey)).toMatchObject({ status: 401, body: { code: 'auth.invalid_token', message: 'Unauthorized!' } });
    // Same claims, same lifetime, published key: accepted, so the key alone made the difference.
    expect(await me(byNewKey)).toMatchObject({ status: 200, body: { id: user.id } });
    // The rereading on a miss does not bring the key back either.
    await pastRereadLimit(startedAt);
    expect(await me(byOldKey)).toMatchObject({ status: 401 });

    const second = await rotate();
    expect(second).toEqual({ kid: expect.any(String), activatesAt: auth.clock.now(), retired: [rotation.kid], removed: [oldKid] });
    expect((await keyRows()).map((row) => row.kid)).toEqual([rotation.kid, second.kid].sort());
  });

  it('with removeOld deletes every previous key at once, and the JWKS holds only the new key', async () => {
    const user = await auth.signedInUser();
    const first = auth.keys.current.kid;
    const { kid: second } = await rotate();
    await auth.keys.reload();
    const bySecond = await signIn(user.username, user.password);
    expect(kidOf(bySecond)).toBe(second);

    const rotation = await rotate({ removeOld: true });
    expect(rotation.retired).toEqual([]);
    expect([...rotation.removed].sort()).toEqual([first, second].sort());
    expect(await keyRows()).toEqual([{ kid: rotation.kid, retired_at: null }]);
    expect(await jwksKids()).toEqual([rotation.kid]);

    await auth.keys.reload();
    for (const token of [user.accessToken, bySecond]) {
      expect(await me(token)).toMatchObject({ status: 401, body: { code: 'auth.invalid_token' } });
    }
    const fresh = await signIn(user.username, user.password);
    expect(kidOf(fresh)).toBe(rotation.kid);
    expect(await me(fresh)).toMatchObject({ status: 200 });
  });
});

describe('concurrent key creation', () => {
  it('leaves exactly one active key after two concurrent rotations', async () => {
    const original = auth.keys.current.kid;
    const rotations = await Promise.all([rotate(), rotate()]);

    const rows = await keyRows();
    const active = rows.filter((row) => row.retired_at === null);
    expect(active).toHaveLength(1);
    expect(rows).toHaveLength(3);
    const kids = rotations.map((rotation) => rotation.kid);
    expect(kids).toContain(active[0]?.kid);
    // One rotation retired the original key, the other the key the first one created.
    const loser = kids.find((kid) => kid !== active[0]?.kid);
    expect(rotations.flatMap((rotation) => rotation.retired).sort()).toEqual([original, loser].sort());

    await auth.keys.reload();
    expect(auth.keys.current.kid).toBe(active[0]?.kid);
  });

  it('creates exactly one key when ensureSigningKey runs concurrently on an empty database', async () => {
    const testDb = await createTestDatabase();
    const db = createDb({ databaseUrl: testDb.databaseUrl, dataDir: testDb.dataDir ?? 'memory://', poolMax: 10 });
    try {
      await migrateDb(db.knex);
      const clock = () => new Date();
      await Promise.all(Array.from({ length: 6 }, () => ensureSigningKey(db.knex, { logger, clock })));

      const rows: { kid: string; retired_at: Date | null }[] = await db.knex('signing_keys').select('kid', 'retired_at');
      expect(rows).toEqual([{ kid: expect.any(String), retired_at: null }]);
      const keys = await createKeyStore(db.knex, { logger, clock, accessTokenTtlSeconds: TTL });
      expect(keys.current.kid).toBe(rows[0]?.kid);
      expect((await keys.publicJwks()).keys.map((key) => key.kid)).toEqual([rows[0]?.kid]);
    } finally {
      await db.close();
      await testDb.drop();
    }
  });
});

describe('a second instance over the same database', () => {
  it('signs with the key of a rotation made elsewhere after its reload(), and the first instance verifies those tokens', async () => {
    const oldKid = auth.keys.current.kid;
    const keys = await createKeyStore(auth.db.knex, { logger, clock: auth.clock.now, accessTokenTtlSeconds: TTL });
    expect(keys.current.kid).toBe(oldKid);
    const other = await startServer(createApp({ config: TEST_CONFIG, knex: auth.db.knex, keys, logger, clock: auth.clock.now }), { port: 0 });
    try {
      const user = await auth.signedInUser();
      const rotation = await rotate();
      await keys.reload();
      expect(keys.current.kid).toBe(rotation.kid);

      const res = await fetch(`${other.url}/api/auth/signin`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: user.username, password: user.password }),
      });
      const body: Json = await readJson(res);
      expect(res.status).toBe(200);
      expect(kidOf(body.accessToken)).toBe(rotation.kid);

      // The first instance has not reloaded: it still signs with the old key, and meets the new
      // kid as unknown, which makes it reread the keys (once its rate limit allows).
      expect(auth.keys.current.kid).toBe(oldKid);
      await pastRereadLimit(startedAt);
      expect(await me(body.accessToken)).toMatchObject({ status: 200, body: { id: user.id } });
      expect(auth.keys.current.kid).toBe(rotation.kid);
    } finally {
      await other.close();
    }
  });

  it('finds with getKey() a kid it had not loaded, by rereading the keys on the miss', async () => {
    const keys = await createKeyStore(auth.db.knex, { logger, clock: auth.clock.now, accessTokenTtlSeconds: TTL });
    const loadedAt = Date.now();
    const rotation = await rotate();

    await pastRereadLimit(loadedAt);
    const found = await keys.getKey(rotation.kid);
    expect(found).toBeDefined();
    const published: Json = await readJson(await fetch(`${auth.url}/.well-known/jwks.json`));
    const jwk = published.keys.find((key: Json) => key.kid === rotation.kid);
    expect(found?.export({ format: 'jwk' })).toMatchObject({ kty: 'RSA', n: jwk.n, e: jwk.e });
    // The reread also moved its signing key to the new one.
    expect(keys.current.kid).toBe(rotation.kid);
    expect(await keys.getKey('no-such-kid')).toBeUndefined();
  });
});
