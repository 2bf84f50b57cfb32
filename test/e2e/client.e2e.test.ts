import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  GatehouseError,
  createClient,
  memoryTokenStore,
  type GatehouseClient,
  type GatehouseClientOptions,
  type SessionTokens,
  type TokenStore,
} from '../../packages/client/src';
import { buildUser, freePort, type UserInput } from '@gatehouse/testing';
import { startStack, type RunningStack } from './stack';

// @gatehouse/client against the whole stack, through the gateway. Access tokens live 30 s (the
// shortest the auth service allows) and content allows no clock skew, so the tokens really
// expire during the run and the client's refresh is the real one. (The client is imported by
// path: the workspace root, where these tests resolve packages, does not depend on it.)

const ACCESS_TOKEN_TTL = 30;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-client-e2e-'));
const admin = buildUser({ username: `admin_${Date.now().toString(36)}` });
let stack: RunningStack;

beforeAll(async () => {
  stack = await startStack({
    DATA_DIR: dataDir,
    DATABASE_URL: '',
    LOG_LEVEL: 'warn',
    BCRYPT_COST: '4',
    ACCESS_TOKEN_TTL: String(ACCESS_TOKEN_TTL),
    CLOCK_TOLERANCE_SECONDS: '0',
    ADMIN_USERNAME: admin.username,
    ADMIN_EMAIL: admin.email,
    ADMIN_PASSWORD: admin.password,
  });
}, 120_000);

afterAll(() => {
  stack?.kill();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** A client of the stack's gateway that counts the requests it sends, by path. */
function countingClient(options: Partial<GatehouseClientOptions> = {}): { client: GatehouseClient; sent: (path: string) => number } {
  const counts = new Map<string, number>();
  const client = createClient({
    baseUrl: stack.gatewayUrl,
    fetch: (input, init) => {
      const pathname = new URL(input).pathname;
      counts.set(pathname, (counts.get(pathname) ?? 0) + 1);
      return fetch(input, init);
    },
    ...options,
  });
  return { client, sent: (pathname) => counts.get(pathname) ?? 0 };
}

/** Signs `user` up and returns a client signed in as them. */
async function signedUp(user: UserInput, options: Partial<GatehouseClientOptions> = {}) {
  const counted = countingClient(options);
  await counted.client.signUp(user);
  const profile = await counted.client.signIn({ username: user.username, password: user.password });
  return { ...counted, id: profile.id };
}

/** The `exp` claim of an access token, in seconds since the epoch. */
function expiryOf(accessToken: string): number {
  const payload = accessToken.split('.')[1] ?? '';
  const claims: { exp?: unknown } = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  if (typeof claims.exp !== 'number') throw new Error('access token without exp');
  return claims.exp;
}

async function tokensOf(client: GatehouseClient): Promise<SessionTokens> {
  const session = await client.session();
  if (!session) throw new Error('not signed in');
  return session;
}

/** The rejection of `promise`, which must be a GatehouseError. */
async function failure(promise: Promise<unknown>): Promise<GatehouseError> {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(error instanceof GatehouseError)) throw new Error(`expected a GatehouseError, got ${String(error)}`);
  return error;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('@gatehouse/client through the gateway', () => {
  it('signs up, signs in with the tutorial fields, and reads the boards its roles allow', async () => {
    const user = buildUser();
    const client = createClient({ baseUrl: `${stack.gatewayUrl}/` });
    expect(await client.signUp(user)).toEqual({ message: 'User registered successfully!' });

    const signedIn = await client.signIn({ username: user.username, password: user.password });
    expect(signedIn).toMatchObject({ username: user.username, email: user.email, roles: ['ROLE_USER'], tokenType: 'Bearer', expiresIn: ACCESS_TOKEN_TTL });
    expect(await client.session()).toEqual({ accessToken: signedIn.accessToken, refreshToken: signedIn.refreshToken });

    const me = await client.me();
    expect(me).toEqual({ id: signedIn.id, username: user.username, email: user.email, roles: ['ROLE_USER'], createdAt: expect.any(String) });
    expect(Number.isNaN(Date.parse(me.createdAt))).toBe(false);

    expect(await client.board('all')).toBe('Public Content.');
    expect(await client.board('user')).toBe('User Content.');
    const refused = await failure(client.board('mod'));
    expect(refused).toMatchObject({ name: 'GatehouseError', status: 403, code: 'auth.missing_role', message: 'Require Moderator Role!' });
    expect(refused.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await failure(client.board('admin'))).toMatchObject({ status: 403, code: 'auth.missing_role', message: 'Require Admin Role!' });
  });

  it('throws the service errors as GatehouseError with status, code, message, details and request id', async () => {
    const user = buildUser();
    const { client } = await signedUp(user);

    const taken = await failure(client.signUp({ ...buildUser(), username: user.username.toUpperCase() }));
    expect(taken).toMatchObject({ status: 400, code: 'user.username_taken', message: 'Failed! Username is already in use!' });
    expect(taken.requestId).toEqual(expect.any(String));

    const invalid = await failure(client.signUp({ ...buildUser(), password: 'short' }));
    expect(invalid).toMatchObject({ status: 400, code: 'request.invalid_input' });
    expect(invalid.details).toEqual([{ path: 'password', message: 'must be at least 8 characters' }]);

    const wrong = await failure(client.signIn({ username: user.username, password: 'not-the-password' }));
    expect(wrong).toMatchObject({ status: 401, code: 'auth.invalid_credentials', message: 'Invalid username or password!' });
    // A failed sign-in leaves the session it had.
    expect(await client.board('user')).toBe('User Content.');

    const signedOut = createClient({ baseUrl: stack.gatewayUrl });
    expect(await failure(signedOut.board('user'))).toMatchObject({ status: 403, code: 'auth.no_token', message: 'No token provided!' });
    expect(await failure(signedOut.refresh())).toMatchObject({ status: 0, code: 'client.no_session' });

    const unreachable = createClient({ baseUrl: `http://127.0.0.1:${await freePort()}` });
    expect(await failure(unreachable.board('all'))).toMatchObject({ status: 0, code: 'client.network_error' });
  });

  it('runs the admin API: list and search users, get one, set roles, disable and enable, read the audit log', async () => {
    const alice = buildUser();
    const bob = buildUser();
    const { client: aliceClient, id: aliceId } = await signedUp(alice);
    const { id: bobId } = await signedUp(bob);
    const adminClient = createClient({ baseUrl: stack.gatewayUrl });
    const { id: adminId } = await adminClient.signIn({ username: admin.username, password: admin.password });

    const page = await adminClient.listUsers({ q: alice.username, limit: 5 });
    expect(page).toEqual({
      users: [{ id: aliceId, username: alice.username, email: alice.email, roles: ['user'], disabled: false, createdAt: expect.any(String) }],
      total: 1,
      limit: 5,
      offset: 0,
    });
    expect((await adminClient.listUsers()).total).toBeGreaterThanOrEqual(3);
    expect(await adminClient.getUser(aliceId)).toEqual(page.users[0]);
    expect(await failure(adminClient.getUser(2_000_000_000))).toMatchObject({ status: 404, code: 'user.not_found' });

    const promoted = await adminClient.setRoles(aliceId, ['user', 'moderator']);
    expect(promoted).toEqual({ message: 'User roles updated successfully!', user: { ...page.users[0], roles: ['user', 'moderator'] } });
    const { events, nextBefore } = await adminClient.listEvents({ userId: aliceId, type: 'user.roles_changed' });
    expect(nextBefore).toBeNull();
    expect(events).toEqual([
      expect.objectContaining({ type: 'user.roles_changed', userId: aliceId, actorId: adminId, details: { from: ['user'], to: ['user', 'moderator'] } }),
    ]);

    // Alice's token predates the change: auth refuses it at once, the client refreshes it and
    // retries, and the new token carries the new role.
    const counted = countingClient({ store: memoryTokenStore(await tokensOf(aliceClient)) });
    expect((await counted.client.me()).roles).toEqual(['ROLE_USER', 'ROLE_MODERATOR']);
    expect(counted.sent('/api/auth/refreshtoken')).toBe(1);
    expect(counted.sent('/api/auth/me')).toBe(2);
    expect(await counted.client.board('mod')).toBe('Moderator Content.');

    expect((await adminClient.disableUser(bobId)).user.disabled).toBe(true);
    expect(await adminClient.enableUser(bobId)).toEqual({ message: 'User enabled.', user: expect.objectContaining({ id: bobId, disabled: false }) });
    const lastAdmin = await failure(adminClient.setRoles(adminId, ['user']));
    expect(lastAdmin).toMatchObject({ status: 409, code: 'user.last_admin' });

    const notAdmin = await failure(counted.client.listEvents());
    expect(notAdmin).toMatchObject({ status: 403, code: 'auth.missing_role', message: 'Require Admin Role!' });
  });

  it('signOutAll ends every session of the user: the other session is refused and its refresh too', async () => {
    const user = buildUser();
    const first = await signedUp(user);
    const ended: GatehouseError[] = [];
    const second = countingClient({ onSessionEnded: (error) => ended.push(error) });
    await second.client.signIn({ username: user.username, password: user.password });

    expect(await first.client.signOutAll()).toEqual({ message: "You've been signed out of every session!" });
    expect(await first.client.session()).toBeNull();

    const refused = await failure(second.client.me());
    expect(refused).toMatchObject({ status: 403, code: 'auth.refresh_token_revoked' });
    expect(ended).toHaveLength(1);
    expect(ended[0]).toBe(refused);
    expect(await second.client.session()).toBeNull();
    expect(second.sent('/api/auth/refreshtoken')).toBe(1);
  });

  it('after the access token expires: one refresh for all concurrent calls, each retried; a refused refresh ends the session; sign-out still works', async () => {
    // Three sessions started together, so one wait lets all three tokens expire.
    const writes: (SessionTokens | null)[] = [];
    const memory = memoryTokenStore();
    const recordingStore: TokenStore = {
      get: () => memory.get(),
      async set(session) {
        writes.push(session);
        await memory.set(session);
      },
    };
    const busy = await signedUp(buildUser(), { store: recordingStore });
    const endedSessions: GatehouseError[] = [];
    const victim = await signedUp(buildUser(), { onSessionEnded: (error) => endedSessions.push(error) });
    const idle = await signedUp(buildUser());

    // Someone else ends the victim's session with its refresh token; its access token still
    // works until it expires.
    const thief = createClient({ baseUrl: stack.gatewayUrl, store: memoryTokenStore({ ...(await tokensOf(victim.client)) }) });
    await thief.signOut();
    expect(await victim.client.board('user')).toBe('User Content.');

    const before = await tokensOf(busy.client);
    const expiresAt = Math.max(...(await Promise.all([busy, victim, idle].map(async ({ client }) => expiryOf((await tokensOf(client)).accessToken)))));
    // Content allows no clock skew; auth's own routes allow 5 s.
    await sleep(Math.max(0, (expiresAt + 6) * 1000 - Date.now()));

    // The token really expired: sent as it is, content refuses it.
    const raw = await fetch(`${stack.gatewayUrl}/api/test/user`, { headers: { authorization: `Bearer ${before.accessToken}` } });
    expect(raw.status).toBe(401);
    expect(await raw.json()).toMatchObject({ code: 'auth.invalid_token' });

    const results = await Promise.all([
      busy.client.board('user'),
      busy.client.board('user'),
      busy.client.board('all'),
      busy.client.me().then((me) => me.id),
      busy.client.board('user'),
    ]);
    expect(results).toEqual(['User Content.', 'User Content.', 'Public Content.', busy.id, 'User Content.']);
    expect(busy.sent('/api/auth/refreshtoken')).toBe(1);
    const after = await tokensOf(busy.client);
    expect(after.accessToken).not.toBe(before.accessToken);
    expect(after.refreshToken).not.toBe(before.refreshToken);
    expect(writes).toEqual([before, after]);

    const adminClient = createClient({ baseUrl: stack.gatewayUrl });
    await adminClient.signIn({ username: admin.username, password: admin.password });
    const refreshes = await adminClient.listEvents({ userId: busy.id, type: 'token.refresh' });
    expect(refreshes.events).toHaveLength(1);
    expect((await adminClient.listEvents({ userId: busy.id, type: 'token.reuse_detected' })).events).toEqual([]);

    // The victim's refresh is refused: the call fails with that refusal and the session is gone.
    const ended = await failure(victim.client.board('user'));
    expect(ended).toMatchObject({ status: 403, code: 'auth.refresh_token_revoked' });
    expect(endedSessions).toHaveLength(1);
    expect(endedSessions[0]).toBe(ended);
    expect(await victim.client.session()).toBeNull();

    // Sign-out names the session by its refresh token, so an expired access token is no obstacle.
    expect(await idle.client.signOut()).toEqual({ message: "You've been signed out!" });
    expect(idle.sent('/api/auth/refreshtoken')).toBe(0);
    expect(await idle.client.session()).toBeNull();
    expect((await adminClient.listEvents({ userId: idle.id, type: 'signout' })).events).toHaveLength(1);
  }, 90_000);
});
