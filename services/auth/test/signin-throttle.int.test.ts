import { randomBytes } from 'node:crypto';
import { createSilentLogger, startServer, type RunningServer } from '@gatehouse/common';
import { buildUser, readJson, type Json, type UserInput } from '@gatehouse/testing';
import { createApp } from '../src/app';
import { createAuthService } from '../src/services/auth.service';
import { createPasswordHasher, type PasswordHasher } from '../src/services/passwords';
import { createSigninThrottle, DEFAULT_THROTTLE } from '../src/services/signin-throttle';
import { startAuth, TEST_CONFIG, type AuthHarness } from './helpers';

// The sign-in throttle, on: failed sign-ins counted per account + IP, per IP and per account in
// PostgreSQL, locking for 5 s and doubling up to the cap; 429 before the password is looked at.
// Each harness has a database of its own; each test uses its own users and client addresses
// (X-Forwarded-For, which the app trusts), so the counts of one test never reach another.

const TOO_MANY = { code: 'auth.too_many_attempts', message: 'Too many failed sign-in attempts. Try again later.' };
const INVALID = { code: 'auth.invalid_credentials', message: 'Invalid username or password!' };
const WRONG_PASSWORD = 'not-the-password-at-all';

/** What one sign-in answered, with the header the throttle sets. */
interface Attempt {
  status: number;
  body: Json;
  retryAfter: string | null;
}

/** The 429 of a locked attempt, `seconds` before the lock ends. */
const locked = (seconds: number): Attempt => ({
  status: 429,
  body: { ...TOO_MANY, requestId: expect.any(String) },
  retryAfter: String(seconds),
});

/** The 401 of a wrong password or an unknown user, without Retry-After. */
const refused = (): Attempt => ({ status: 401, body: { ...INVALID, requestId: expect.any(String) }, retryAfter: null });

const times = <T>(count: number, make: () => T): T[] => Array.from({ length: count }, make);

let ipCount = 0;
/** A client address no other test has used (198.18.0.0/15, the benchmarking range). */
function nextIp(): string {
  ipCount += 1;
  return `198.18.${Math.floor(ipCount / 250)}.${(ipCount % 250) + 1}`;
}

/** A sign-in at `baseUrl` (an auth app) from client address `ip`. */
async function signInAt(baseUrl: string, username: string, password: string, ip: string): Promise<Attempt> {
  const res = await fetch(`${baseUrl}/api/auth/signin`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-forwarded-for': ip },
    body: JSON.stringify({ username, password }),
  });
  return { status: res.status, body: await readJson(res), retryAfter: res.headers.get('retry-after') };
}

const signIn = (h: AuthHarness, username: string, password: string, ip: string) => signInAt(h.url, username, password, ip);

/** `count` wrong passwords for `username` from `ip`, one after the other. */
async function failures(baseUrl: string, username: string, ip: string, count: number): Promise<Attempt[]> {
  const replies: Attempt[] = [];
  for (let i = 0; i < count; i += 1) replies.push(await signInAt(baseUrl, username, WRONG_PASSWORD, ip));
  return replies;
}

/** A fresh user, signed up (not signed in). */
async function newUser(h: AuthHarness): Promise<UserInput> {
  const user = buildUser();
  const res = await h.post('/api/auth/signup', user);
  if (res.status !== 201) throw new Error(`sign-up answered ${res.status}`);
  return user;
}

async function userIdOf(h: AuthHarness, username: string): Promise<number> {
  const row: { id: number } = await h.db.knex('users').whereRaw('lower(username) = lower(?)', [username]).first('id');
  return row.id;
}

async function throttleRow(h: AuthHarness, key: string): Promise<{ failures: number; locked_until: Date | null } | undefined> {
  return h.db.knex('signin_throttle').where({ key }).first('failures', 'locked_until');
}

/** A second auth app over the same database, keys and clock as `h`, on port 0. */
async function startSecondApp(h: AuthHarness, config = TEST_CONFIG): Promise<RunningServer> {
  const app = createApp({ config, knex: h.db.knex, keys: h.keys, logger: createSilentLogger(), clock: h.clock.now });
  return startServer(app, { port: 0 });
}

/** A password hasher that counts its `verify` calls. */
function countingHasher(inner: PasswordHasher): PasswordHasher & { verifies: number } {
  const counting = {
    verifies: 0,
    hash: (password: string) => inner.hash(password),
    verify(password: string, hash: string | undefined) {
      counting.verifies += 1;
      return inner.verify(password, hash);
    },
    needsRehash: (hash: string) => inner.needsRehash(hash),
    isTooGuessable: (password: string, userInputs: string[]) => inner.isTooGuessable(password, userInputs),
  };
  return counting;
}

describe('sign-in throttle with the default settings (5 per account + IP, 50 per IP, 100 per account)', () => {
  let auth: AuthHarness;

  beforeAll(async () => {
    auth = await startAuth({ config: { signinThrottle: DEFAULT_THROTTLE } });
  });

  afterAll(async () => {
    await auth?.close();
  });

  it('[POST /api/auth/signin] answers 401 to 5 wrong passwords and 429 auth.too_many_attempts with Retry-After 5 to the 6th', async () => {
    const user = await newUser(auth);
    const ip = nextIp();
    expect(await failures(auth.url, user.username, ip, 5)).toEqual(times(5, refused));
    expect(await signIn(auth, user.username, WRONG_PASSWORD, ip)).toEqual(locked(5));
  });

  it('answers 429 to the right password while locked, signs nobody in, and lets the right password in once the lock has passed', async () => {
    const user = await newUser(auth);
    const ip = nextIp();
    await failures(auth.url, user.username, ip, 5);

    expect(await signIn(auth, user.username, user.password, ip)).toEqual(locked(5));
    auth.clock.advance(4);
    expect(await signIn(auth, user.username, user.password, ip)).toEqual(locked(1));
    const id = await userIdOf(auth, user.username);
    const types: string[] = await auth.db.knex('auth_events').where({ user_id: id }).pluck('type');
    expect(types.filter((type) => type === 'signin.success')).toEqual([]);
    expect(await auth.db.knex('refresh_tokens').where({ user_id: id })).toEqual([]);

    auth.clock.advance(1);
    const after = await signIn(auth, user.username, user.password, ip);
    expect(after.status).toBe(200);
    expect(after.body).toMatchObject({ id, username: user.username, accessToken: expect.any(String) });
  });

  it('refuses a locked attempt before checking the password: no bcrypt comparison at all', async () => {
    const user = await newUser(auth);
    const ip = nextIp();
    const passwords = countingHasher(createPasswordHasher(TEST_CONFIG.bcryptCost));
    const service = createAuthService({
      knex: auth.db.knex,
      passwords,
      throttle: createSigninThrottle(auth.db.knex, DEFAULT_THROTTLE),
      keys: auth.keys,
      tokens: TEST_CONFIG,
      clock: auth.clock.now,
    });
    const attempt = (password: string) => service.signIn({ username: user.username, password }, { ip }).catch((err: unknown) => err);

    const failed: unknown[] = [];
    for (let i = 0; i < 5; i += 1) failed.push(await attempt(WRONG_PASSWORD));
    expect(failed).toEqual(times(5, () => expect.objectContaining({ status: 401, code: INVALID.code })));
    expect(passwords.verifies).toBe(5);

    expect(await attempt(user.password)).toMatchObject({ status: 429, code: TOO_MANY.code, headers: { 'Retry-After': '5' } });
    expect(await attempt(WRONG_PASSWORD)).toMatchObject({ status: 429, code: TOO_MANY.code });
    expect(passwords.verifies).toBe(5);
  });

  it('does not lock the same account for another IP: the right password from there answers 200', async () => {
    const user = await newUser(auth);
    const [attacker, owner] = [nextIp(), nextIp()];
    await failures(auth.url, user.username, attacker, 5);
    expect(await signIn(auth, user.username, user.password, attacker)).toEqual(locked(5));

    const fromOwner = await signIn(auth, user.username, user.password, owner);
    expect(fromOwner.status).toBe(200);
    expect(fromOwner.retryAfter).toBeNull();
  });

  it('starts the count again after a successful sign-in below the threshold (4 failures, success, 4 failures: still 401)', async () => {
    const user = await newUser(auth);
    const ip = nextIp();
    expect(await failures(auth.url, user.username, ip, 4)).toEqual(times(4, refused));
    expect((await signIn(auth, user.username, user.password, ip)).status).toBe(200);
    expect(await failures(auth.url, user.username, ip, 4)).toEqual(times(4, refused));
    expect(await throttleRow(auth, `account-ip:${user.username.toLowerCase()}|${ip}`)).toMatchObject({ failures: 4, locked_until: null });

    // Still counting: the 5th failure of the new count locks.
    expect(await failures(auth.url, user.username, ip, 1)).toEqual([refused()]);
    expect(await signIn(auth, user.username, user.password, ip)).toEqual(locked(5));
  });

  it('lets failures expire 15 minutes after the first one (4 failures, 15 min 1 s later 4 more: still 401)', async () => {
    const user = await newUser(auth);
    const ip = nextIp();
    expect(await failures(auth.url, user.username, ip, 4)).toEqual(times(4, refused));
    auth.clock.advance(DEFAULT_THROTTLE.windowSeconds + 1);
    expect(await failures(auth.url, user.username, ip, 4)).toEqual(times(4, refused));

    // The new window counts from its own first failure.
    expect(await failures(auth.url, user.username, ip, 1)).toEqual([refused()]);
    expect(await signIn(auth, user.username, WRONG_PASSWORD, ip)).toEqual(locked(5));
  });

  it('counts unknown usernames exactly like known ones, so the 429 says nothing about which accounts exist', async () => {
    const known = await newUser(auth);
    const unknown = `ghost_${randomBytes(5).toString('hex')}`;
    expect(await auth.db.knex('users').whereRaw('lower(username) = lower(?)', [unknown]).first()).toBeUndefined();

    // Without the request id, which differs on every response.
    const shape = (attempt: Attempt) => ({ status: attempt.status, code: attempt.body.code, message: attempt.body.message, retryAfter: attempt.retryAfter });
    const transcript = async (username: string) => {
      const ip = nextIp();
      const replies = [...(await failures(auth.url, username, ip, 6)), await signIn(auth, username, known.password, ip)];
      return replies.map(shape);
    };
    const forUnknown = await transcript(unknown);
    const forKnown = await transcript(known.username);

    expect(forUnknown).toEqual([...times(5, () => shape(refused())), shape(locked(5)), shape(locked(5))]);
    expect(forUnknown).toEqual(forKnown);
  });

  describe('over two auth instances sharing the database', () => {
    let second: RunningServer;

    beforeAll(async () => {
      second = await startSecondApp(auth, { ...TEST_CONFIG, signinThrottle: DEFAULT_THROTTLE });
    });

    afterAll(async () => {
      await second?.close();
    });

    it('locks the account on both instances when the failures are split across them', async () => {
      const user = await newUser(auth);
      const ip = nextIp();
      const replies: Attempt[] = [];
      for (const url of [auth.url, second.url, auth.url, second.url, auth.url]) {
        replies.push(await signInAt(url, user.username, WRONG_PASSWORD, ip));
      }
      expect(replies).toEqual(times(5, refused));

      expect(await signInAt(second.url, user.username, user.password, ip)).toEqual(locked(5));
      expect(await signInAt(auth.url, user.username, user.password, ip)).toEqual(locked(5));
    });
  });
});

describe('sign-in throttle: the lock doubles up to maxLockSeconds', () => {
  const MAX_LOCK_SECONDS = 60;
  let auth: AuthHarness;

  beforeAll(async () => {
    auth = await startAuth({ config: { signinThrottle: { ...DEFAULT_THROTTLE, maxLockSeconds: MAX_LOCK_SECONDS } } });
  });

  afterAll(async () => {
    await auth?.close();
  });

  it('locks for 5 s, then 10, 20, 40 s for each failure after a lock, and never longer than maxLockSeconds', async () => {
    const user = await newUser(auth);
    const ip = nextIp();
    const key = `account-ip:${user.username.toLowerCase()}|${ip}`;
    expect(await failures(auth.url, user.username, ip, 5)).toEqual(times(5, refused));

    // Each round: the lock's Retry-After, one second before it ends, and a failure once it has.
    const rounds: { lock: Attempt; lastSecond: Attempt; afterLock: Attempt; lockedForMs: number }[] = [];
    for (let round = 0; round < 10; round += 1) {
      const lock = await signIn(auth, user.username, user.password, ip);
      const row = await throttleRow(auth, key);
      const lockedForMs = (row?.locked_until?.getTime() ?? 0) - auth.clock.now().getTime();
      const seconds = Number(lock.retryAfter);
      auth.clock.advance(seconds - 1);
      const lastSecond = await signIn(auth, user.username, user.password, ip);
      auth.clock.advance(1);
      const afterLock = await signIn(auth, user.username, WRONG_PASSWORD, ip);
      rounds.push({ lock, lastSecond, afterLock, lockedForMs });
    }

    const expected = [5, 10, 20, 40, 60, 60, 60, 60, 60, 60];
    expect(rounds).toEqual(
      expected.map((seconds) => ({ lock: locked(seconds), lastSecond: locked(1), afterLock: refused(), lockedForMs: seconds * 1000 })),
    );
    // 15 failures in all, well within one window: the count was never reset.
    expect(await throttleRow(auth, key)).toMatchObject({ failures: 15 });
    expect(await signIn(auth, user.username, user.password, ip)).toEqual(locked(MAX_LOCK_SECONDS));
  });
});

describe('sign-in throttle per IP (maxFailuresPerIp 8)', () => {
  let auth: AuthHarness;

  beforeAll(async () => {
    auth = await startAuth({ config: { signinThrottle: { ...DEFAULT_THROTTLE, maxFailuresPerIp: 8 } } });
  });

  afterAll(async () => {
    await auth?.close();
  });

  it('locks an IP whose failures are spread over many accounts, even for a new account with the right password; other IPs are fine', async () => {
    const ip = nextIp();
    const victims = await Promise.all(times(6, () => newUser(auth)));
    const regular = await newUser(auth);
    const spread: Attempt[] = [];
    for (const victim of [...victims, regular]) spread.push(await signIn(auth, victim.username, WRONG_PASSWORD, ip));
    // A success from the IP clears that account's counters, not the IP's: the 8th failure locks.
    expect((await signIn(auth, regular.username, regular.password, ip)).status).toBe(200);
    expect(await throttleRow(auth, `account-ip:${regular.username.toLowerCase()}|${ip}`)).toBeUndefined();
    spread.push(await signIn(auth, `ghost_${randomBytes(5).toString('hex')}`, WRONG_PASSWORD, ip));
    expect(spread).toEqual(times(8, refused));

    const newcomer = await newUser(auth);
    expect(await signIn(auth, newcomer.username, newcomer.password, ip)).toEqual(locked(5));
    expect(await signIn(auth, regular.username, regular.password, ip)).toEqual(locked(5));
    expect((await signIn(auth, newcomer.username, newcomer.password, nextIp())).status).toBe(200);
  });
});

describe('sign-in throttle per account across IPs (maxFailures 2: the account locks at 40)', () => {
  let auth: AuthHarness;

  beforeAll(async () => {
    auth = await startAuth({ config: { signinThrottle: { ...DEFAULT_THROTTLE, maxFailures: 2 } } });
  });

  afterAll(async () => {
    await auth?.close();
  });

  it('locks the account everywhere after 20 × maxFailures failures from different IPs; once the lock passes the right password works and clears it', async () => {
    const user = await newUser(auth);
    const accountKey = `account:${user.username.toLowerCase()}`;
    const botnet: Attempt[] = [];
    for (let i = 0; i < 40; i += 1) botnet.push(await signIn(auth, user.username, WRONG_PASSWORD, nextIp()));
    expect(botnet).toEqual(times(40, refused));

    expect(await signIn(auth, user.username, user.password, nextIp())).toEqual(locked(5));
    expect(await signIn(auth, user.username, user.password, nextIp())).toEqual(locked(5));

    auth.clock.advance(5);
    expect((await signIn(auth, user.username, user.password, nextIp())).status).toBe(200);
    expect(await throttleRow(auth, accountKey)).toBeUndefined();

    // Cleared, not merely unlocked: a 41st failure would have locked it again.
    expect(await signIn(auth, user.username, WRONG_PASSWORD, nextIp())).toEqual(refused());
    expect((await signIn(auth, user.username, user.password, nextIp())).status).toBe(200);
  });
});

describe('sign-in throttle off (maxFailures 0)', () => {
  let auth: AuthHarness;

  beforeAll(async () => {
    auth = await startAuth({ config: { signinThrottle: { ...DEFAULT_THROTTLE, maxFailures: 0 } } });
  });

  afterAll(async () => {
    await auth?.close();
  });

  it('never answers 429, however many failures one IP makes for one account, and stores no counters', async () => {
    const user = await newUser(auth);
    const ip = nextIp();
    const count = DEFAULT_THROTTLE.maxFailuresPerIp + 10;
    expect(await failures(auth.url, user.username, ip, count)).toEqual(times(count, refused));
    expect((await signIn(auth, user.username, user.password, ip)).status).toBe(200);
    expect(await auth.db.knex('signin_throttle').select('key')).toEqual([]);
  });
});

describe('sign-in throttle against a burst of concurrent guesses', () => {
  let auth: AuthHarness;

  beforeAll(async () => {
    auth = await startAuth({ config: { signinThrottle: DEFAULT_THROTTLE } });
  });

  afterAll(async () => {
    await auth?.close();
  });

  it('lets no more guesses through than the threshold, however many arrive at once', async () => {
    const user = await newUser(auth);
    const ip = nextIp();
    const replies = await Promise.all(Array.from({ length: 40 }, () => signIn(auth, user.username, `${user.password}-wrong`, ip)));
    const statuses = replies.map((reply) => reply.status);
    const counts = (status: number) => statuses.filter((seen) => seen === status).length;
    // On a starved machine (CI running everything at once) a guess queued behind the others on
    // the counters' rows can outwait the statement timeout: that is a 503 and counts as no
    // attempt, never as a pass. Anything else but 401 and 429 fails here with its body.
    const others = replies.filter((reply) => reply.status !== 401 && reply.status !== 429);
    for (const reply of others) expect(reply).toMatchObject({ status: 503, body: { code: 'service.unavailable' } });
    expect(counts(401)).toBeLessThanOrEqual(DEFAULT_THROTTLE.maxFailures);
    // And the throttle does not refuse early: only guesses past the threshold get the 429.
    expect(counts(401) + others.length).toBeGreaterThanOrEqual(DEFAULT_THROTTLE.maxFailures);
    // Nothing is left reserved once the burst is over.
    const pending: number[] = await auth.db.knex('signin_throttle').pluck('pending');
    expect(pending.every((count) => count === 0)).toBe(true);
  });

  // Only PostgreSQL runs statements side by side; the embedded database runs one at a time.
  const describeOnPostgres = process.env.TEST_DATABASE_URL && process.env.GATEHOUSE_TEST_DB !== 'pglite' ? describe : describe.skip;

  describeOnPostgres('on PostgreSQL', () => {
    it('never deadlocks: overlapping reservations, failures, successes, releases and prunes of the same counters all complete', async () => {
      // Every statement locks an attempt's three counter rows in one order. Before it did, an
      // insert (rows in its own order) and an update (rows in scan order) could each hold a row
      // the other waited for: PostgreSQL killed one with 40P01, a 500. Thresholds high enough
      // that nothing here is refused, so every call must succeed.
      const throttle = createSigninThrottle(auth.db.knex, { ...DEFAULT_THROTTLE, maxFailures: 10_000, maxFailuresPerIp: 100_000 });
      const user = await newUser(auth);
      const ip = nextIp();
      const errors: unknown[] = [];
      for (let round = 0; round < 10; round += 1) {
        await Promise.all(
          Array.from({ length: 40 }, async (_, i) => {
            try {
              // Now and then a prune, far enough ahead that every counter is stale to it.
              if (i % 10 === 9) await throttle.prune(new Date(auth.clock.now().getTime() + 2 * DEFAULT_THROTTLE.windowSeconds * 1000));
              const attempt = await throttle.reserve(user.username, ip, auth.clock.now());
              if (i % 3 === 0) await attempt.succeeded();
              else if (i % 3 === 1) await attempt.failed(auth.clock.now());
              else await attempt.release();
            } catch (err) {
              errors.push(err);
            }
          }),
        );
      }
      expect(errors).toEqual([]);
      const pending: number[] = await auth.db.knex('signin_throttle').pluck('pending');
      expect(pending.every((count) => count === 0)).toBe(true);
    }, 60_000);
  });
});

describe('signinThrottle.prune(now)', () => {
  let auth: AuthHarness;

  beforeAll(async () => {
    auth = await startAuth();
  });

  afterAll(async () => {
    await auth?.close();
  });

  it('deletes counters whose window and lock have both passed, and keeps locked or recent ones', async () => {
    const throttle = createSigninThrottle(auth.db.knex, { ...DEFAULT_THROTTLE, maxLockSeconds: 3600 });
    const t0 = auth.clock.now().getTime();
    const at = (seconds: number) => new Date(t0 + seconds * 1000);
    const record = async (username: string, ip: string, count: number, when: Date) => {
      for (let i = 0; i < count; i += 1) await throttle.recordFailure(username, ip, when);
    };
    // expired: two failures at t0, never locked. locked: 15 failures at t0, the account + IP key
    // locked for the whole hour. recent: failures 10 minutes later.
    await record('expired', '192.0.2.1', 2, at(0));
    await record('locked', '192.0.2.2', 15, at(0));
    await record('recent', '192.0.2.3', 2, at(600));
    const keys = async () => (await auth.db.knex('signin_throttle').pluck('key')).sort();

    expect(await throttle.prune(at(DEFAULT_THROTTLE.windowSeconds - 1))).toBe(0);
    expect(await keys()).toHaveLength(9);

    expect(await throttle.prune(at(DEFAULT_THROTTLE.windowSeconds + 1))).toBe(5);
    expect(await keys()).toEqual(['account-ip:locked|192.0.2.2', 'account-ip:recent|192.0.2.3', 'account:recent', 'ip:192.0.2.3'].sort());
    await expect(throttle.reserve('locked', '192.0.2.2', at(DEFAULT_THROTTLE.windowSeconds + 1))).rejects.toMatchObject({
      status: 429,
      code: TOO_MANY.code,
    });

    // The refused attempt above reserved on its keys before being refused, so the two keys
    // pruned a moment ago exist again (empty, with a new window) and go now as well.
    expect(await throttle.prune(at(3601))).toBe(6);
    expect(await keys()).toEqual([]);
  });
});
