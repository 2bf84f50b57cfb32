import { buildUser, createTestDatabase, readJson, type Json, type TestDatabase, type UserInput } from '@gatehouse/testing';
import { runCli, startStack, type RunningStack } from './stack';

// A token's life through the gateway, with the stack running as `pnpm start` runs it on
// PostgreSQL: roles changed by an admin, every session ended, signing keys rotated from the CLI.
// Content verifies tokens on its own (cached JWKS, polled revocation feed), so each change
// reaches it after a poll: the tests wait for it with a deadline, never a fixed sleep.
const describeOnPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

/** Long enough for a poll of 200 ms (revocations) or 1 s (JWKS) on a busy machine. */
const DEADLINE_MS = 5_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Calls `probe` every 100 ms until `done` accepts its value or the deadline passes; returns the last value. */
async function eventually<T>(probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs = DEADLINE_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value) || Date.now() >= deadline) return value;
    await sleep(100);
  }
}

/**
 * One part of a JWT (0: header, 1: claims), decoded without verifying. jsonwebtoken is a
 * dependency of the services, not of the workspace root these tests belong to.
 */
function jwtPart(token: string, index: 0 | 1): Json {
  const part = token.split('.')[index];
  if (part === undefined) throw new Error('not a JWT');
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

const kidOf = (token: string): string | undefined => jwtPart(token, 0).kid;
const claimsOf = (token: string): Json => jwtPart(token, 1);

describeOnPostgres('token lifecycle through the gateway, on PostgreSQL', () => {
  let database: TestDatabase;
  let stack: RunningStack | undefined;
  let env: NodeJS.ProcessEnv;
  const admin = buildUser();

  beforeAll(async () => {
    database = await createTestDatabase();
    env = {
      DATABASE_URL: database.databaseUrl,
      LOG_LEVEL: 'warn',
      BCRYPT_COST: '4',
      REVOCATION_POLL_MS: '200',
      // The default 10 s limit on refetching for an unknown kid stays: a rotated key must reach
      // content by being published before it signs, not by a refetch.
      JWKS_REFRESH_MS: '1000',
      SIGNING_KEY_RELOAD_MS: '200',
      ADMIN_USERNAME: admin.username,
      ADMIN_EMAIL: admin.email,
      ADMIN_PASSWORD: admin.password,
    };
    stack = await startStack(env);
  }, 120_000);

  afterAll(async () => {
    if (stack) await stack.interrupt();
    stack?.kill();
    await database?.drop();
  });

  async function call(method: string, path: string, options: { token?: string; body?: unknown } = {}) {
    if (!stack) throw new Error('stack not started');
    const headers: Record<string, string> = {};
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${stack.gatewayUrl}${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    return { status: res.status, body: await readJson(res) };
  }

  /** A content board: its text on 200, its JSON error otherwise. */
  async function board(name: 'user' | 'mod' | 'admin', token: string): Promise<{ status: number; text: string }> {
    if (!stack) throw new Error('stack not started');
    const res = await fetch(`${stack.gatewayUrl}/api/test/${name}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, text: await res.text() };
  }

  async function signIn(user: UserInput): Promise<Json> {
    const res = await call('POST', '/api/auth/signin', { body: { username: user.username, password: user.password } });
    if (res.status !== 200) throw new Error(`sign-in answered ${res.status}: ${JSON.stringify(res.body)}`);
    return res.body;
  }

  async function signUpAndIn(): Promise<{ user: UserInput; session: Json }> {
    const user = buildUser();
    const signUp = await call('POST', '/api/auth/signup', { body: user });
    if (signUp.status !== 201) throw new Error(`sign-up answered ${signUp.status}`);
    return { user, session: await signIn(user) };
  }

  function refresh(refreshToken: string) {
    return call('POST', '/api/auth/refreshtoken', { body: { refreshToken } });
  }

  async function setRoles(userId: number, roles: string[]) {
    const { accessToken } = await signIn(admin);
    return call('PUT', `/api/auth/users/${userId}/roles`, { token: accessToken, body: { roles } });
  }

  /** Signs in until the token's kid is not `previousKid` (auth rereads its keys every 200 ms). */
  async function signInWithNewKey(user: UserInput, previousKid: string | undefined): Promise<string> {
    const session = await eventually(
      () => signIn(user),
      (body) => kidOf(body.accessToken) !== previousKid,
    );
    return session.accessToken;
  }

  it('lets the bootstrap admin from ADMIN_USERNAME/EMAIL/PASSWORD sign in through the gateway and read the admin board', async () => {
    const session = await signIn(admin);
    expect(session).toMatchObject({ username: admin.username, email: admin.email, roles: ['ROLE_USER', 'ROLE_ADMIN'] });
    expect(await board('admin', session.accessToken)).toEqual({ status: 200, text: 'Admin Content.' });
  });

  it('promotes a user: 403 on the moderator board before, 200 with the token refreshed after PUT /api/auth/users/:id/roles', async () => {
    const { session } = await signUpAndIn();
    const before = await board('mod', session.accessToken);
    expect(before.status).toBe(403);
    expect(JSON.parse(before.text)).toMatchObject({ message: 'Require Moderator Role!' });

    const promoted = await setRoles(session.id, ['user', 'moderator']);
    expect(promoted).toMatchObject({ status: 200, body: { user: { id: session.id, roles: ['user', 'moderator'] } } });

    const refreshed = await refresh(session.refreshToken);
    expect(refreshed.status).toBe(200);
    expect(claimsOf(refreshed.body.accessToken).roles).toEqual(['user', 'moderator']);
    expect(await board('mod', refreshed.body.accessToken)).toEqual({ status: 200, text: 'Moderator Content.' });
  });

  it('demotes a moderator: content refuses the unexpired moderator token within seconds, and a refreshed token has user rights only', async () => {
    const { session } = await signUpAndIn();
    await setRoles(session.id, ['user', 'moderator']);
    const moderator = (await refresh(session.refreshToken)).body;
    expect(await board('mod', moderator.accessToken)).toEqual({ status: 200, text: 'Moderator Content.' });

    const demoted = await setRoles(session.id, ['user']);
    expect(demoted).toMatchObject({ status: 200, body: { user: { roles: ['user'] } } });

    const refused = await eventually(
      async () => [(await board('mod', moderator.accessToken)).status, (await board('user', moderator.accessToken)).status],
      (statuses) => statuses.every((status) => status === 401),
    );
    expect(refused).toEqual([401, 401]);
    // Refused because it was revoked, not because it ran out.
    expect(claimsOf(moderator.accessToken).exp).toBeGreaterThan(Date.now() / 1000);

    const refreshed = await refresh(moderator.refreshToken);
    expect(refreshed.status).toBe(200);
    expect(claimsOf(refreshed.body.accessToken).roles).toEqual(['user']);
    expect(await board('user', refreshed.body.accessToken)).toEqual({ status: 200, text: 'User Content.' });
    const mod = await board('mod', refreshed.body.accessToken);
    expect(mod.status).toBe(403);
    expect(JSON.parse(mod.text)).toMatchObject({ message: 'Require Moderator Role!' });
  });

  it('[POST /api/auth/signout-all] ends every session: content refuses the old access token, and its refresh tokens get 403', async () => {
    const { user, session } = await signUpAndIn();
    const otherSession = await signIn(user);
    expect(await board('user', session.accessToken)).toEqual({ status: 200, text: 'User Content.' });

    const signedOut = await call('POST', '/api/auth/signout-all', { token: session.accessToken });
    expect(signedOut).toMatchObject({ status: 200, body: { message: "You've been signed out of every session!" } });

    const refused = await eventually(
      () => board('user', session.accessToken),
      (res) => res.status === 401,
    );
    expect(refused.status).toBe(401);
    expect(claimsOf(session.accessToken).exp).toBeGreaterThan(Date.now() / 1000);
    for (const refreshToken of [session.refreshToken, otherSession.refreshToken]) {
      expect(await refresh(refreshToken)).toMatchObject({
        status: 403,
        body: { message: 'Refresh token was revoked. Please make a new signin request' },
      });
    }
  });

  it('rotate-keys from the CLI while the stack runs: content accepts tokens of the new key by itself, and still those of the old key', async () => {
    const { user, session } = await signUpAndIn();
    const oldKid = kidOf(session.accessToken);

    const result = await runCli(['rotate-keys', '--activate-after', '3'], env);
    expect(result.code).toBe(0);
    const newKid = /New signing key ([A-Za-z0-9_-]+), signing from /.exec(result.output)?.[1];
    expect(newKid).toBeDefined();
    expect(result.output).toContain(`Retired (published for ${15 * 60 + 300} s more): ${oldKid}.`);

    const after = await signInWithNewKey(user, oldKid);
    expect(kidOf(after)).toBe(newKid);
    expect(await board('user', after)).toEqual({ status: 200, text: 'User Content.' });
    expect(await board('user', session.accessToken)).toEqual({ status: 200, text: 'User Content.' });

    const jwks = await call('GET', '/api/auth/.well-known/jwks.json');
    expect(jwks.body.keys.map((key: Json) => key.kid).sort()).toEqual([oldKid, newKid].sort());
  });

  it('rotate-keys --remove-old: once content refreshes its JWKS, a token signed by a removed key gets 401', async () => {
    const { user, session } = await signUpAndIn();
    const removedKid = kidOf(session.accessToken);
    expect(await board('user', session.accessToken)).toEqual({ status: 200, text: 'User Content.' });

    const result = await runCli(['rotate-keys', '--remove-old'], env);
    expect(result.code).toBe(0);
    expect(result.output).toMatch(new RegExp(`Removed: .*${removedKid}`));
    const jwks = await call('GET', '/api/auth/.well-known/jwks.json');
    expect(jwks.body.keys.map((key: Json) => key.kid)).not.toContain(removedKid);

    const refused = await eventually(
      () => board('user', session.accessToken),
      (res) => res.status === 401,
    );
    expect(refused.status).toBe(401);
    expect(JSON.parse(refused.text)).toMatchObject({ message: 'Unauthorized!', code: 'auth.invalid_token' });
    expect(claimsOf(session.accessToken).exp).toBeGreaterThan(Date.now() / 1000);

    const fresh = await signInWithNewKey(user, removedKid);
    expect(await board('user', fresh)).toEqual({ status: 200, text: 'User Content.' });
  });
});
