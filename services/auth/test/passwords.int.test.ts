import { randomBytes } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { ZodError } from 'zod';
import { createSilentLogger, startServer, type RunningServer } from '@gatehouse/common';
import { buildUser, readJson, type Json, type UserInput } from '@gatehouse/testing';
import { createApp } from '../src/app';
import { createAuthService } from '../src/services/auth.service';
import { createAdmin } from '../src/services/bootstrap-admin';
import { createBcryptPool, createPasswordHasher, type BcryptEngine, type BcryptPool, type PasswordHasher } from '../src/services/passwords';
import { createSigninThrottle, DEFAULT_THROTTLE } from '../src/services/signin-throttle';
import { startAuth, TEST_CONFIG, type AuthHarness } from './helpers';

// Passwords: sign-up and the admin CLI refuse guessable ones, a hash made at a lower cost than
// configured is replaced on the next sign-in, and an unknown user costs one bcrypt comparison
// like a wrong password does.

const GUESSABLE = { path: 'password', message: expect.stringMatching(/too common or too easy to guess/) };

let auth: AuthHarness;

beforeAll(async () => {
  auth = await startAuth();
});

afterAll(async () => {
  await auth?.close();
});

const tag = () => randomBytes(5).toString('hex');

/**
 * A sign-up body whose email's local part differs from the username, and both look random, so
 * a password built from either is guessable only through the user's own details.
 */
const newUser = (password?: string): UserInput => {
  const user = buildUser({ email: `mail${tag()}@example.test` });
  return password === undefined ? user : { ...user, password };
};

async function signUp(user: UserInput): Promise<{ status: number; body: Json }> {
  const res = await auth.post('/api/auth/signup', user);
  return { status: res.status, body: await readJson(res) };
}

async function signIn(baseUrl: string, username: string, password: string): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${baseUrl}/api/auth/signin`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  return { status: res.status, body: await readJson(res) };
}

interface StoredUser {
  id: number;
  password_hash: string;
  updated_at: Date;
}

async function storedUser(username: string): Promise<StoredUser | undefined> {
  return auth.db.knex('users').whereRaw('lower(username) = lower(?)', [username]).first('id', 'password_hash', 'updated_at');
}

describe('[POST /api/auth/signup] guessable passwords', () => {
  it.each<[string, (user: UserInput) => string]>([
    ['a common password with digits', () => 'password123'],
    ['a keyboard row', () => 'qwertyuiop'],
    ['a common phrase with a digit', () => 'iloveyou2'],
    ['a leet-speak common password', () => 'Passw0rd!'],
    ['the username plus 1234', (user) => `${user.username}1234`],
    ["the email's local part plus !!", (user) => `${user.email.split('@')[0]}!!`],
  ])('returns 400 request.invalid_input naming password for %s, and stores nothing', async (_name, passwordOf) => {
    const user = newUser();
    const password = passwordOf(user);
    const eventsBefore = await auth.db.knex('auth_events').count<{ n: string }[]>({ n: '*' });

    const res = await signUp({ ...user, password });
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 400, code: 'request.invalid_input' });
    expect(res.body.details).toContainEqual(GUESSABLE);
    expect(JSON.stringify(res.body)).not.toContain(password);

    expect(await storedUser(user.username)).toBeUndefined();
    expect(await auth.db.knex('users').where({ email: user.email }).first()).toBeUndefined();
    expect(await auth.db.knex('auth_events').count<{ n: string }[]>({ n: '*' })).toEqual(eventsBefore);
  });

  it.each([
    ['a passphrase of unrelated words', 'correct-horse-battery-staple'],
    ['a random 20-character string', randomBytes(15).toString('base64url')],
  ])('accepts %s, and the password signs in', async (_name, password) => {
    expect(password.length).toBeGreaterThanOrEqual(20);
    const user = newUser(password);
    expect(await signUp(user)).toEqual({ status: 201, body: { message: 'User registered successfully!' } });
    expect(await storedUser(user.username)).toMatchObject({ password_hash: expect.stringMatching(/^\$2[aby]\$04\$/) });
    expect((await signIn(auth.url, user.username, password)).status).toBe(200);
  });
});

describe('createAdmin (the CLI and ADMIN_* path)', () => {
  const deps = () => ({ passwords: createPasswordHasher(TEST_CONFIG.bcryptCost), clock: auth.clock.now, via: 'cli' as const });

  it.each(['password123', 'qwertyuiop', 'Passw0rd!'])('throws a ZodError naming password for %s and creates nothing', async (password) => {
    const account = newUser(password);
    const adminEventsBefore = await auth.db.knex('auth_events').where({ type: 'admin.created' }).pluck('id');

    const err = await createAdmin(auth.db.knex, account, deps()).catch((error: unknown) => error);
    expect(err).toBeInstanceOf(ZodError);
    expect(err).toMatchObject({ issues: expect.arrayContaining([expect.objectContaining({ path: ['password'] })]) });

    expect(await storedUser(account.username)).toBeUndefined();
    expect(await auth.db.knex('auth_events').where({ type: 'admin.created' }).pluck('id')).toEqual(adminEventsBefore);
  });

  it('creates the admin with a strong password (the same call, for comparison)', async () => {
    const account = newUser('correct-horse-battery-staple');
    const user = await createAdmin(auth.db.knex, account, deps());
    expect(user).toMatchObject({ username: account.username, roles: expect.arrayContaining(['user', 'admin']) });
    expect(await storedUser(account.username)).toMatchObject({ id: user.id });
  });
});

describe('rehash on a raised bcrypt cost', () => {
  /** The same app over the same database, at bcrypt cost 5. */
  let raised: RunningServer;

  beforeAll(async () => {
    const app = createApp({
      config: { ...TEST_CONFIG, bcryptCost: 5 },
      knex: auth.db.knex,
      keys: auth.keys,
      logger: createSilentLogger(),
      clock: auth.clock.now,
    });
    raised = await startServer(app, { port: 0 });
  });

  afterAll(async () => {
    await raised?.close();
  });

  async function signedUpAtCost4(): Promise<{ user: UserInput; before: StoredUser }> {
    const user = newUser();
    expect((await signUp(user)).status).toBe(201);
    const before = await storedUser(user.username);
    if (!before) throw new Error('sign-up stored no user');
    expect(before.password_hash).toMatch(/^\$2[aby]\$04\$/);
    return { user, before };
  }

  it('replaces a cost-4 hash with a cost-5 one on a successful sign-in; the password still works on both apps', async () => {
    const { user, before } = await signedUpAtCost4();

    expect((await signIn(raised.url, user.username, user.password)).status).toBe(200);
    const after = await storedUser(user.username);
    expect(after?.password_hash).toMatch(/^\$2[aby]\$05\$/);
    expect(after?.password_hash).not.toBe(before.password_hash);
    expect(await bcrypt.compare(user.password, after?.password_hash ?? '')).toBe(true);

    expect((await signIn(raised.url, user.username, user.password)).status).toBe(200);
    expect((await signIn(auth.url, user.username, user.password)).status).toBe(200);
    expect((await signIn(raised.url, user.username, 'not-the-password')).status).toBe(401);
  });

  it('does not rehash on a failed sign-in', async () => {
    const { user, before } = await signedUpAtCost4();
    expect((await signIn(raised.url, user.username, 'not-the-password')).status).toBe(401);
    expect(await storedUser(user.username)).toEqual(before);
  });

  it('does not rewrite a hash already at the configured cost (hash and updated_at unchanged)', async () => {
    const { user } = await signedUpAtCost4();
    expect((await signIn(raised.url, user.username, user.password)).status).toBe(200);
    const rehashed = await storedUser(user.username);
    expect(rehashed?.password_hash).toMatch(/^\$2[aby]\$05\$/);

    expect((await signIn(raised.url, user.username, user.password)).status).toBe(200);
    expect(await storedUser(user.username)).toEqual(rehashed);
    // Nor does the cost-4 app lower it.
    expect((await signIn(auth.url, user.username, user.password)).status).toBe(200);
    expect(await storedUser(user.username)).toEqual(rehashed);
  });

  it('leaves a cost-4 hash alone on the cost-4 app', async () => {
    const { user, before } = await signedUpAtCost4();
    expect((await signIn(auth.url, user.username, user.password)).status).toBe(200);
    expect(await storedUser(user.username)).toEqual(before);
  });
});

describe('sign-in failures cost the same: one bcrypt comparison for an unknown user and for a wrong password', () => {
  /** Every `verify` call: whether it was given a stored hash. */
  let verifies: { withHash: boolean }[];
  let compareSpy: jest.SpiedFunction<typeof bcrypt.compare>;

  beforeEach(() => {
    verifies = [];
    compareSpy = jest.spyOn(bcrypt, 'compare');
  });

  afterEach(() => {
    compareSpy.mockRestore();
  });

  function createService() {
    const inner = createPasswordHasher(TEST_CONFIG.bcryptCost);
    const passwords: PasswordHasher = {
      hash: (password) => inner.hash(password),
      verify(password, hash) {
        verifies.push({ withHash: hash !== undefined });
        return inner.verify(password, hash);
      },
      needsRehash: (hash) => inner.needsRehash(hash),
      isTooGuessable: (password, userInputs) => inner.isTooGuessable(password, userInputs),
    };
    return createAuthService({
      knex: auth.db.knex,
      passwords,
      throttle: createSigninThrottle(auth.db.knex, { ...DEFAULT_THROTTLE, maxFailures: 0 }),
      keys: auth.keys,
      tokens: TEST_CONFIG,
      clock: auth.clock.now,
    });
  }

  /** The error a failed sign-in throws, in the fields a client sees. */
  async function failureOf(attempt: Promise<unknown>): Promise<Json> {
    const err: Json = await attempt.then(
      () => ({ status: 'signed in' }),
      (error: unknown) => error,
    );
    return { status: err.status, code: err.code, message: err.message, name: err.name };
  }

  it('runs one bcrypt comparison (against a dummy hash) for an unknown user, and fails like a wrong password', async () => {
    const service = createService();
    const user = newUser();
    expect((await signUp(user)).status).toBe(201);
    compareSpy.mockClear();

    const unknown = await failureOf(service.signIn({ username: `ghost_${tag()}`, password: user.password }, {}));
    expect(verifies).toEqual([{ withHash: false }]);
    expect(compareSpy).toHaveBeenCalledTimes(1);

    const wrong = await failureOf(service.signIn({ username: user.username, password: 'not-the-password' }, {}));
    expect(verifies).toEqual([{ withHash: false }, { withHash: true }]);
    expect(compareSpy).toHaveBeenCalledTimes(2);

    const expected = { status: 401, code: 'auth.invalid_credentials', message: 'Invalid username or password!', name: 'UnauthorizedError' };
    expect(unknown).toEqual(expected);
    expect(wrong).toEqual(expected);
  });

  it('runs one comparison for the right password too', async () => {
    const service = createService();
    const user = newUser();
    expect((await signUp(user)).status).toBe(201);
    compareSpy.mockClear();

    const session = await service.signIn({ username: user.username, password: user.password }, {});
    expect(session.user.username).toBe(user.username);
    expect(verifies).toEqual([{ withHash: true }]);
    expect(compareSpy).toHaveBeenCalledTimes(1);
  });
});

describe('a sign-in whose client has gone while its password check waited for a thread', () => {
  let pool: BcryptPool;
  let harness: AuthHarness;
  /** How each comparison the app asked for ended. */
  const compares: Promise<string>[] = [];
  /** Resolves `compareCalled[n]` when the app asks for comparison number n. */
  const compareCalled: (() => void)[] = [];
  const compareStarted = Array.from({ length: 2 }, (_, n) => new Promise<void>((resolve) => (compareCalled[n] = resolve)));

  beforeAll(async () => {
    // One thread, and cost 12: a comparison holds it for a few hundred milliseconds.
    pool = createBcryptPool(1);
    const watched: BcryptEngine = {
      ...pool,
      compare(password, hash, signal) {
        const result = pool.compare(password, hash, signal);
        compares.push(result.then(String, (err: unknown) => `refused ${(err as { status?: number }).status}`));
        compareCalled[compares.length - 1]?.();
        return result;
      },
    };
    harness = await startAuth({ config: { bcryptCost: 12 }, bcrypt: watched });
  });

  afterAll(async () => {
    await harness?.close();
    await pool?.close();
  });

  it('is dropped without its comparison, counted as abandoned and leaves no audit event; the sign-in ahead of it answers 200', async () => {
    const user = buildUser();
    expect((await harness.post('/api/auth/signup', user)).status).toBe(201);
    const first = harness.post('/api/auth/signin', { username: user.username, password: user.password });
    await compareStarted[0];
    const client = new AbortController();
    const second = fetch(`${harness.url}/api/auth/signin`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: user.username, password: user.password }),
      signal: client.signal,
    }).catch((err: unknown) => err);
    await compareStarted[1];
    client.abort();

    expect(await second).toMatchObject({ name: 'AbortError' });
    expect((await first).status).toBe(200);
    expect(await Promise.all(compares)).toEqual(['true', 'refused 499']);
    const events: string[] = await harness.db.knex('auth_events').where({ user_id: (await harness.db.knex('users').where({ username: user.username }).first()).id }).pluck('type');
    expect(events.sort()).toEqual(['signin.success', 'user.signup']);
    // Counted apart from the errors, as a sign-in nobody waited for.
    const metrics = await (await fetch(`${harness.url}/metrics`)).text();
    expect(metrics).toMatch(/^gatehouse_signin_total\{outcome="abandoned"\} 1$/m);
    expect(metrics).toMatch(/^gatehouse_signin_total\{outcome="error"\} 0$/m);
  }, 30_000);
});
