import { randomBytes } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { ConflictError, createSilentLogger } from '@gatehouse/common';
import { buildUser, type Json, type UserInput } from '@gatehouse/testing';
import { loadConfig } from '../src/config';
import { createAdminService } from '../src/services/admin.service';
import { ensureBootstrapAdmin } from '../src/services/bootstrap-admin';
import { createPasswordHasher } from '../src/services/passwords';
import { startAuth, TEST_CONFIG, type AuthHarness, type SignedIn } from './helpers';

// One harness for most of the file; the users each test makes are its own (buildUser), so tests
// do not depend on each other. Scenarios that need to know every admin of the database (the
// last-admin rule) or that move the clock run on a fresh harness of their own.
let auth: AuthHarness;
let admin: SignedIn;
const scenarioHarnesses: AuthHarness[] = [];

beforeAll(async () => {
  auth = await startAuth();
  admin = await auth.signedInUser(['user', 'admin']);
});

afterAll(async () => {
  await Promise.all(scenarioHarnesses.map((harness) => harness.close()));
  await auth?.close();
});

/** A fresh auth app over a database of its own, closed in afterAll. */
async function scenarioHarness(): Promise<AuthHarness> {
  const harness = await startAuth();
  scenarioHarnesses.push(harness);
  return harness;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

interface CreatedUser extends UserInput {
  id: number;
}

/** Signs up a user through the API (no sign-in) and returns it with its id. */
async function signUp(h: AuthHarness, overrides: Partial<UserInput> = {}): Promise<CreatedUser> {
  const user = buildUser(overrides);
  const res = await h.call('POST', '/api/auth/signup', { body: user });
  if (res.status !== 201) throw new Error(`sign-up answered ${res.status}: ${JSON.stringify(res.body)}`);
  const row: { id: number } = await h.db.knex('users').whereRaw('lower(username) = lower(?)', [user.username]).first('id');
  return { ...user, id: row.id };
}

function signIn(h: AuthHarness, username: string, password: string) {
  return h.call('POST', '/api/auth/signin', { body: { username, password } });
}

function refresh(h: AuthHarness, refreshToken: string) {
  return h.call('POST', '/api/auth/refreshtoken', { body: { refreshToken } });
}

function me(h: AuthHarness, token: string) {
  return h.call('GET', '/api/auth/me', { token });
}

function setRoles(h: AuthHarness, token: string, userId: number | string, roles: unknown) {
  return h.call('PUT', `/api/auth/users/${userId}/roles`, { token, body: roles === undefined ? undefined : { roles } });
}

function disable(h: AuthHarness, token: string, userId: number | string) {
  return h.call('POST', `/api/auth/users/${userId}/disable`, { token });
}

function enable(h: AuthHarness, token: string, userId: number | string) {
  return h.call('POST', `/api/auth/users/${userId}/enable`, { token });
}

function listUsers(h: AuthHarness, token: string, query: Record<string, string | number> = {}) {
  return h.call('GET', `/api/auth/users?${new URLSearchParams(stringValues(query))}`, { token });
}

function listEvents(h: AuthHarness, token: string, query: Record<string, string | number> = {}) {
  return h.call('GET', `/api/auth/events?${new URLSearchParams(stringValues(query))}`, { token });
}

function stringValues(query: Record<string, string | number>): Record<string, string> {
  return Object.fromEntries(Object.entries(query).map(([key, value]) => [key, String(value)]));
}

/** The user's role names as stored, lowest first. */
async function rolesInDb(h: AuthHarness, userId: number): Promise<string[]> {
  return h.db.knex('user_roles').join('roles', 'roles.id', 'user_roles.role_id').where({ user_id: userId }).orderBy('roles.id').pluck('name');
}

/** Everything an admin route could change about a user, read straight from the database. */
async function userState(h: AuthHarness, userId: number) {
  const row: { disabled_at: Date | null; token_version: number; tokens_revoked_at: Date | null } = await h.db
    .knex('users')
    .where({ id: userId })
    .first('disabled_at', 'token_version', 'tokens_revoked_at');
  const liveRefreshTokens = await h.db.knex('refresh_tokens').where({ user_id: userId }).whereNull('revoked_at').count({ n: '*' }).first();
  return { ...row, roles: await rolesInDb(h, userId), liveRefreshTokens: Number(liveRefreshTokens?.n) };
}

async function eventCount(h: AuthHarness): Promise<number> {
  const row = await h.db.knex('auth_events').count({ n: '*' }).first();
  return Number(row?.n);
}

async function tokenVersion(h: AuthHarness, userId: number): Promise<number> {
  return (await userState(h, userId)).token_version;
}

/** Ids of the users holding `admin` and not disabled, ascending. */
async function activeAdminIds(h: AuthHarness): Promise<number[]> {
  const ids: number[] = await h.db
    .knex('users')
    .join('user_roles', 'user_roles.user_id', 'users.id')
    .join('roles', 'roles.id', 'user_roles.role_id')
    .where('roles.name', 'admin')
    .whereNull('users.disabled_at')
    .orderBy('users.id')
    .pluck('users.id');
  return ids;
}

/** The claims of an access token, unverified (the tests only read what was issued). */
function claimsOf(token: string): Json {
  return jwt.decode(token);
}

/** A short random tag with letters, so case-insensitive matching is put to the test. */
function randomTag(): string {
  return `k${randomBytes(4).toString('hex')}z`;
}

function ids(users: Json[]): number[] {
  return users.map((user: Json) => user.id);
}

// ---------------------------------------------------------------------------------------------
// 1. Only admins

interface AdminRoute {
  method: string;
  path: string;
  body?: unknown;
  /** The enable route acts on a disabled user, so a wrongful call would show. */
  target: 'active' | 'disabled';
}

const ADMIN_ROUTES: AdminRoute[] = [
  { method: 'GET', path: '/api/auth/users', target: 'active' },
  { method: 'GET', path: '/api/auth/users/:id', target: 'active' },
  { method: 'PUT', path: '/api/auth/users/:id/roles', body: { roles: ['user', 'moderator', 'admin'] }, target: 'active' },
  { method: 'POST', path: '/api/auth/users/:id/disable', target: 'active' },
  { method: 'POST', path: '/api/auth/users/:id/enable', target: 'disabled' },
  { method: 'GET', path: '/api/auth/events', target: 'active' },
];

describe('admin routes refuse everyone but admins', () => {
  let user: SignedIn;
  let moderator: SignedIn;
  let activeTarget: SignedIn;
  let disabledTarget: SignedIn;

  beforeAll(async () => {
    user = await auth.signedInUser(['user']);
    moderator = await auth.signedInUser(['user', 'moderator']);
    activeTarget = await auth.signedInUser(['user']);
    disabledTarget = await auth.signedInUser(['user']);
    const disabled = await disable(auth, admin.accessToken, disabledTarget.id);
    if (disabled.status !== 200) throw new Error(`disable answered ${disabled.status}`);
  });

  /** The target user's state and the audit log's size: what a refused call must leave alone. */
  async function snapshot(targetId: number) {
    return { target: await userState(auth, targetId), events: await eventCount(auth) };
  }

  describe.each(ADMIN_ROUTES)('[$method $path]', (route) => {
    const targetOf = () => (route.target === 'active' ? activeTarget : disabledTarget);
    const call = (token?: string) =>
      auth.call(route.method, route.path.replace(':id', String(targetOf().id)), { token, body: route.body });

    it("answers 403 'No token provided!' without a token", async () => {
      const before = await snapshot(targetOf().id);
      const res = await call();
      expect(res.status).toBe(403);
      expect(res.body).toMatchObject({ message: 'No token provided!', code: 'auth.no_token' });
      expect(await snapshot(targetOf().id)).toEqual(before);
    });

    it.each([
      ['a user', () => user],
      ['a moderator', () => moderator],
    ])("answers 403 'Require Admin Role!' to %s and changes nothing", async (_label, caller) => {
      const before = await snapshot(targetOf().id);
      const res = await call(caller().accessToken);
      expect(res.status).toBe(403);
      expect(res.body).toMatchObject({ message: 'Require Admin Role!', code: 'auth.missing_role' });
      expect(res.body).not.toHaveProperty('users');
      expect(res.body).not.toHaveProperty('events');
      expect(await snapshot(targetOf().id)).toEqual(before);
      // The caller's own token was not revoked either.
      expect((await me(auth, caller().accessToken)).status).toBe(200);
    });
  });

  it('[PUT /api/auth/users/:id/roles] does not let a moderator make themself an admin', async () => {
    const res = await setRoles(auth, moderator.accessToken, moderator.id, ['user', 'moderator', 'admin']);
    expect(res.status).toBe(403);
    expect(res.body).toMatchObject({ code: 'auth.missing_role' });
    expect(await rolesInDb(auth, moderator.id)).toEqual(['user', 'moderator']);
  });

  it('[GET /api/auth/users] answers 401 to a token that is not a valid access token', async () => {
    const res = await listUsers(auth, `${admin.accessToken.slice(0, -4)}AAAA`);
    expect(res.status).toBe(401);
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Listing users

describe('[GET /api/auth/users]', () => {
  it('presents users as {id, username, email, roles, disabled, createdAt}, never with a password hash', async () => {
    const res = await listUsers(auth, admin.accessToken, { q: admin.username });
    expect(res.status).toBe(200);
    const row: { email: string; created_at: Date; password_hash: string } = await auth.db
      .knex('users')
      .where({ id: admin.id })
      .first('email', 'created_at', 'password_hash');
    expect(res.body).toEqual({
      users: [
        {
          id: admin.id,
          username: admin.username,
          email: row.email,
          roles: ['user', 'admin'],
          disabled: false,
          createdAt: row.created_at.toISOString(),
        },
      ],
      total: 1,
      limit: 20,
      offset: 0,
    });

    const everyone = await listUsers(auth, admin.accessToken, { limit: 100 });
    const text = JSON.stringify(everyone.body);
    expect(text).not.toContain(row.password_hash);
    expect(text).not.toMatch(/password/i);
    expect(text).not.toContain('$2');
  });

  it('pages by limit and offset in id order, with the total of matching users', async () => {
    const tag = randomTag();
    const created: CreatedUser[] = [];
    for (let i = 0; i < 5; i++) created.push(await signUp(auth, { username: `page_${tag}_${i}` }));
    const expected = created.map((user) => user.id).sort((a, b) => a - b);

    const pages: Json[] = [];
    for (const offset of [0, 2, 4]) {
      const res = await listUsers(auth, admin.accessToken, { q: tag, limit: 2, offset });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ total: 5, limit: 2, offset });
      pages.push(res.body.users);
    }
    expect(pages.map((page) => page.length)).toEqual([2, 2, 1]);
    expect(pages.flatMap(ids)).toEqual(expected);

    const pastTheEnd = await listUsers(auth, admin.accessToken, { q: tag, limit: 2, offset: 6 });
    expect(pastTheEnd.body).toMatchObject({ users: [], total: 5 });
  });

  it('lists every user by default, in ascending id order, with the total of the table', async () => {
    const res = await listUsers(auth, admin.accessToken);
    expect(res.status).toBe(200);
    const count = await auth.db.knex('users').count({ n: '*' }).first();
    expect(res.body.total).toBe(Number(count?.n));
    expect(res.body).toMatchObject({ limit: 20, offset: 0 });
    const listed = ids(res.body.users);
    expect(listed.length).toBe(Math.min(20, Number(count?.n)));
    expect(listed).toEqual([...listed].sort((a, b) => a - b));
    expect(listed[0]).toBe(admin.id);
  });

  it('filters by a substring of the username or the email, case-insensitively', async () => {
    const tag = randomTag();
    const byName = await signUp(auth, { username: `Name_${tag.toUpperCase()}_x` });
    const byEmail = await signUp(auth, { email: `mail.${tag}@example.test` });
    await signUp(auth); // matches neither

    const both = await listUsers(auth, admin.accessToken, { q: tag.toUpperCase() });
    expect(both.status).toBe(200);
    expect(ids(both.body.users)).toEqual([byName.id, byEmail.id]);
    expect(both.body.total).toBe(2);

    const nameOnly = await listUsers(auth, admin.accessToken, { q: `name_${tag}` });
    expect(ids(nameOnly.body.users)).toEqual([byName.id]);

    const emailOnly = await listUsers(auth, admin.accessToken, { q: `MAIL.${tag.toUpperCase()}@EXAMPLE` });
    expect(ids(emailOnly.body.users)).toEqual([byEmail.id]);

    const padded = await listUsers(auth, admin.accessToken, { q: `  ${tag}  ` });
    expect(ids(padded.body.users)).toEqual([byName.id, byEmail.id]);
  });

  it('matches % and _ in q literally, not as LIKE wildcards', async () => {
    const tag = randomTag();
    const underscored = await signUp(auth, { username: `lit${tag}a_b` });
    await signUp(auth, { username: `lit${tag}axb` });

    const underscore = await listUsers(auth, admin.accessToken, { q: `${tag}a_b` });
    expect(underscore.status).toBe(200);
    expect(ids(underscore.body.users)).toEqual([underscored.id]);

    for (const q of [`lit%${tag}`, `${tag}a%b`, `lit${tag}%`]) {
      const percent = await listUsers(auth, admin.accessToken, { q });
      expect({ q, status: percent.status, total: percent.body.total }).toEqual({ q, status: 200, total: 0 });
    }

    const backslash = await listUsers(auth, admin.accessToken, { q: `${tag}\\` });
    expect(backslash.status).toBe(200);
    expect(backslash.body.total).toBe(0);
  });

  // PostgreSQL text cannot hold NUL: like sign-in's username, q must be refused before the query.
  it('returns 400 request.invalid_input, not a 500, for a q with a NUL character', async () => {
    const res = await listUsers(auth, admin.accessToken, { q: 'ad\u0000min' });
    expect({ status: res.status, code: res.body.code }).toEqual({ status: 400, code: 'request.invalid_input' });
    expect((await listUsers(auth, admin.accessToken, { q: admin.username })).status).toBe(200);
  });

  it.each([
    ['a limit over 100', { limit: 101 }],
    ['a limit of 0', { limit: 0 }],
    ['a limit that is not a number', { limit: 'ten' }],
    ['a negative offset', { offset: -1 }],
    ['an unknown query parameter', { role: 'admin' }],
  ])('returns 400 request.invalid_input for %s', async (_label, query) => {
    const res = await listUsers(auth, admin.accessToken, query);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'request.invalid_input' });
  });
});

// ---------------------------------------------------------------------------------------------
// 3. One user

describe('[GET /api/auth/users/:id]', () => {
  it('returns the user as admins see them', async () => {
    const target = await auth.signedInUser(['user', 'moderator']);
    const res = await auth.call('GET', `/api/auth/users/${target.id}`, { token: admin.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      id: target.id,
      username: target.username,
      email: target.body.email,
      roles: ['user', 'moderator'],
      disabled: false,
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    });
  });

  it('returns 404 user.not_found for an unknown id', async () => {
    const res = await auth.call('GET', '/api/auth/users/2147483647', { token: admin.accessToken });
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ message: 'User not found.', code: 'user.not_found' });
  });

  it.each(['abc', '0', '-1', '1.5', '2147483648', '99999999999999999999'])('returns 400 request.invalid_input for id %s', async (id) => {
    const res = await auth.call('GET', `/api/auth/users/${id}`, { token: admin.accessToken });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'request.invalid_input' });
  });
});

// ---------------------------------------------------------------------------------------------
// 4. Setting roles

describe('[PUT /api/auth/users/:id/roles]', () => {
  it('sets exactly the given roles and answers with the tutorial message and the user', async () => {
    const target = await auth.signedInUser(['user']);
    const res = await setRoles(auth, admin.accessToken, target.id, ['user', 'moderator']);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      message: 'User roles updated successfully!',
      user: { id: target.id, username: target.username, roles: ['user', 'moderator'], disabled: false },
    });
    expect(await rolesInDb(auth, target.id)).toEqual(['user', 'moderator']);
  });

  it('takes roles in any order and with repeats, and presents them lowest first', async () => {
    const target = await auth.signedInUser(['user']);
    const res = await setRoles(auth, admin.accessToken, target.id, ['moderator', 'user', 'moderator']);
    expect(res.status).toBe(200);
    expect(res.body.user.roles).toEqual(['user', 'moderator']);
    expect(await rolesInDb(auth, target.id)).toEqual(['user', 'moderator']);
  });

  it("refuses the user's earlier access tokens, and a new sign-in or refresh carries the new roles", async () => {
    const target = await auth.signedInUser(['user']);
    expect((await me(auth, target.accessToken)).status).toBe(200);
    const versionBefore = await tokenVersion(auth, target.id);

    expect((await setRoles(auth, admin.accessToken, target.id, ['user', 'moderator'])).status).toBe(200);
    expect(await tokenVersion(auth, target.id)).toBe(versionBefore + 1);
    const stale = await me(auth, target.accessToken);
    expect(stale.status).toBe(401);

    const again = await signIn(auth, target.username, target.password);
    expect(again.status).toBe(200);
    expect(again.body.roles).toEqual(['ROLE_USER', 'ROLE_MODERATOR']);
    expect(claimsOf(again.body.accessToken)).toMatchObject({ roles: ['user', 'moderator'], ver: versionBefore + 1 });
    expect((await me(auth, again.body.accessToken)).status).toBe(200);

    // A session from before the change refreshes into a token with the new roles.
    const refreshed = await refresh(auth, target.refreshToken);
    expect(refreshed.status).toBe(200);
    expect(claimsOf(refreshed.body.accessToken)).toMatchObject({ roles: ['user', 'moderator'], ver: versionBefore + 1 });
  });

  it("returns 400 'Failed! Role does not exist: superuser' for an unknown role and leaves the roles alone", async () => {
    const target = await auth.signedInUser(['user']);
    const before = await userState(auth, target.id);
    const res = await setRoles(auth, admin.accessToken, target.id, ['user', 'superuser']);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ message: 'Failed! Role does not exist: superuser', code: 'user.unknown_role' });
    expect(await userState(auth, target.id)).toEqual(before);
    expect((await me(auth, target.accessToken)).status).toBe(200);
  });

  it.each([
    ['an empty list', { roles: [] }],
    ['roles that are not an array', { roles: 'admin' }],
    ['a role that is not a string', { roles: [3] }],
    ['an extra field', { roles: ['user'], disabled: false }],
    ['no roles at all', {}],
  ])('returns 400 request.invalid_input for %s and changes nothing', async (_label, body) => {
    const target = await auth.signedInUser(['user', 'moderator']);
    const before = await userState(auth, target.id);
    const res = await auth.call('PUT', `/api/auth/users/${target.id}/roles`, { token: admin.accessToken, body });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'request.invalid_input' });
    expect(await userState(auth, target.id)).toEqual(before);
  });

  it('returns 404 user.not_found for an unknown user', async () => {
    const res = await setRoles(auth, admin.accessToken, 2147483647, ['user']);
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ code: 'user.not_found' });
  });

  it('returns 400 for an id that is not a positive integer', async () => {
    const res = await setRoles(auth, admin.accessToken, 'abc', ['user']);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'request.invalid_input' });
  });
});

// ---------------------------------------------------------------------------------------------
// 5. The last admin
//
// Each scenario runs on a fresh harness, where the admins it makes are the only ones.

describe('the last active admin cannot be removed', () => {
  const lastAdminBody = {
    message: 'Cannot remove the last admin: make another user an admin first.',
    code: 'user.last_admin',
  };

  /** A fresh database whose only admins are `count` new ones. */
  async function withAdmins(count: number): Promise<{ h: AuthHarness; admins: SignedIn[] }> {
    const h = await scenarioHarness();
    const admins: SignedIn[] = [];
    for (let i = 0; i < count; i++) admins.push(await h.signedInUser(['user', 'admin']));
    expect(await activeAdminIds(h)).toEqual(admins.map((a) => a.id).sort((x, y) => x - y));
    return { h, admins };
  }

  it('[PUT /api/auth/users/:id/roles] returns 409 user.last_admin when the only admin demotes themself', async () => {
    const { h, admins } = await withAdmins(1);
    const [only] = admins as [SignedIn];
    const before = await userState(h, only.id);
    const res = await setRoles(h, only.accessToken, only.id, ['user', 'moderator']);
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject(lastAdminBody);
    expect(await userState(h, only.id)).toEqual(before);
    // Nothing was revoked: the admin's token still works.
    expect((await listUsers(h, only.accessToken)).status).toBe(200);
  });

  it('[PUT /api/auth/users/:id/roles] lets the only admin change their other roles while keeping admin', async () => {
    const { h, admins } = await withAdmins(1);
    const [only] = admins as [SignedIn];
    const res = await setRoles(h, only.accessToken, only.id, ['user', 'moderator', 'admin']);
    expect(res.status).toBe(200);
    expect(await rolesInDb(h, only.id)).toEqual(['user', 'moderator', 'admin']);
  });

  it('[POST /api/auth/users/:id/disable] returns 409 user.last_admin for the only admin', async () => {
    const { h, admins } = await withAdmins(1);
    const [only] = admins as [SignedIn];
    const before = await userState(h, only.id);
    const res = await disable(h, only.accessToken, only.id);
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject(lastAdminBody);
    expect(await userState(h, only.id)).toEqual(before);
    expect((await signIn(h, only.username, only.password)).status).toBe(200);
  });

  it('does not count a disabled admin as an admin', async () => {
    const { h, admins } = await withAdmins(2);
    const [a, b] = admins as [SignedIn, SignedIn];
    expect((await disable(h, a.accessToken, b.id)).status).toBe(200);
    expect(await activeAdminIds(h)).toEqual([a.id]);

    expect((await setRoles(h, a.accessToken, a.id, ['user'])).body).toMatchObject(lastAdminBody);
    expect((await disable(h, a.accessToken, a.id)).body).toMatchObject(lastAdminBody);
    expect(await activeAdminIds(h)).toEqual([a.id]);
  });

  it('with two admins, lets one demote the other, and then refuses the one left', async () => {
    const { h, admins } = await withAdmins(2);
    const [a, b] = admins as [SignedIn, SignedIn];
    const res = await setRoles(h, a.accessToken, b.id, ['user']);
    expect(res.status).toBe(200);
    expect(res.body.user.roles).toEqual(['user']);
    expect(await activeAdminIds(h)).toEqual([a.id]);
    // b's admin token went with the role.
    expect((await listUsers(h, b.accessToken)).status).toBe(401);

    const self = await setRoles(h, a.accessToken, a.id, ['user']);
    expect(self.status).toBe(409);
    expect(self.body).toMatchObject(lastAdminBody);
    expect(await activeAdminIds(h)).toEqual([a.id]);
  });

  it('with two admins, lets one disable the other and re-enable them', async () => {
    const { h, admins } = await withAdmins(2);
    const [a, b] = admins as [SignedIn, SignedIn];
    expect((await disable(h, a.accessToken, b.id)).status).toBe(200);
    expect(await activeAdminIds(h)).toEqual([a.id]);
    expect((await enable(h, a.accessToken, b.id)).status).toBe(200);
    expect(await activeAdminIds(h)).toEqual([a.id, b.id].sort((x, y) => x - y));
  });

  /** How the one request of a race that did not succeed was refused: status and code. */
  function refusal(results: { status: number; body: Json }[]): string {
    const refused = results.find((r) => r.status !== 200);
    return `${refused?.status} ${refused?.body?.code}`;
  }

  // Over HTTP the second request either reaches the guarded change (409) or, when the first
  // change committed before it was authenticated, is refused for its revoked token (401).
  // Either way exactly one demotion happens and one admin is left.
  it.each([1, 2, 3, 4])(
    '[PUT /api/auth/users/:id/roles] two admins demoting each other at once leave one admin (round %i)',
    async () => {
      const { h, admins } = await withAdmins(2);
      const [a, b] = admins as [SignedIn, SignedIn];
      const results = await Promise.all([setRoles(h, a.accessToken, b.id, ['user']), setRoles(h, b.accessToken, a.id, ['user'])]);
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(1);
      expect(refusal(results)).toMatch(/^(409 user\.last_admin|401 auth\.invalid_token)$/);

      const left = await activeAdminIds(h);
      expect(left).toHaveLength(1);
      expect(left[0]).toBe(statuses[0] === 200 ? a.id : b.id);
    },
  );

  it.each([1, 2, 3])(
    '[POST /api/auth/users/:id/disable] two admins disabling each other at once leave one admin (round %i)',
    async () => {
      const { h, admins } = await withAdmins(2);
      const [a, b] = admins as [SignedIn, SignedIn];
      const results = await Promise.all([disable(h, a.accessToken, b.id), disable(h, b.accessToken, a.id)]);
      expect(results.filter((r) => r.status === 200)).toHaveLength(1);
      expect(refusal(results)).toMatch(/^(409 user\.last_admin|401 auth\.invalid_token)$/);
      expect(await activeAdminIds(h)).toHaveLength(1);
    },
  );

  // The same race without HTTP in between, so both changes are sure to reach the guard at once:
  // one commits, the other must see it and refuse.
  it.each([1, 2, 3])('the admin service serialises two concurrent demotions of the only two admins (round %i)', async () => {
    const { h, admins } = await withAdmins(2);
    const [a, b] = admins as [SignedIn, SignedIn];
    const service = createAdminService({ knex: h.db.knex, clock: h.clock.now });
    const outcomes = await Promise.allSettled([
      service.setRoles(b.id, ['user'], { actorId: a.id }),
      service.setRoles(a.id, ['user'], { actorId: b.id }),
    ]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(rejected?.reason).toBeInstanceOf(ConflictError);
    expect(rejected?.reason).toMatchObject({ code: 'user.last_admin' });
    expect(await activeAdminIds(h)).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------------
// 6. Disabling and enabling

describe('[POST /api/auth/users/:id/disable] and [POST /api/auth/users/:id/enable]', () => {
  it('disables a user: sessions end, access tokens are refused and sign-in says the user is disabled', async () => {
    const target = await auth.signedInUser(['user']);
    const res = await disable(auth, admin.accessToken, target.id);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ message: 'User disabled.', user: { id: target.id, disabled: true } });
    expect((await userState(auth, target.id)).disabled_at).not.toBeNull();

    const refreshed = await refresh(auth, target.refreshToken);
    expect(refreshed.status).toBe(403);
    expect(refreshed.body).toMatchObject({ code: 'auth.refresh_token_revoked' });
    expect((await me(auth, target.accessToken)).status).toBe(401);

    const withPassword = await signIn(auth, target.username, target.password);
    expect(withPassword.status).toBe(403);
    expect(withPassword.body).toMatchObject({ message: 'User is disabled.', code: 'auth.user_disabled' });
    // A wrong password does not learn that the account exists and is disabled.
    const wrong = await signIn(auth, target.username, 'not-the-password');
    expect(wrong.status).toBe(401);
    expect(wrong.body).toMatchObject({ code: 'auth.invalid_credentials' });

    const shown = await auth.call('GET', `/api/auth/users/${target.id}`, { token: admin.accessToken });
    expect(shown.body).toMatchObject({ id: target.id, disabled: true });
  });

  it('enables a disabled user again: they can sign in, but the sessions ended by disabling stay ended', async () => {
    const target = await auth.signedInUser(['user']);
    expect((await disable(auth, admin.accessToken, target.id)).status).toBe(200);
    const res = await enable(auth, admin.accessToken, target.id);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ message: 'User enabled.', user: { id: target.id, disabled: false } });

    const again = await signIn(auth, target.username, target.password);
    expect(again.status).toBe(200);
    expect((await me(auth, again.body.accessToken)).status).toBe(200);
    expect((await refresh(auth, again.body.refreshToken)).status).toBe(200);

    expect((await me(auth, target.accessToken)).status).toBe(401);
    expect((await refresh(auth, target.refreshToken)).status).toBe(403);
  });

  it('accepts disabling twice and enabling twice, recording each change once', async () => {
    const target = await auth.signedInUser(['user']);
    for (let i = 0; i < 2; i++) {
      const res = await disable(auth, admin.accessToken, target.id);
      expect(res.status).toBe(200);
      expect(res.body.user.disabled).toBe(true);
    }
    for (let i = 0; i < 2; i++) {
      const res = await enable(auth, admin.accessToken, target.id);
      expect(res.status).toBe(200);
      expect(res.body.user.disabled).toBe(false);
    }
    const events = await listEvents(auth, admin.accessToken, { userId: target.id });
    const types = events.body.events.map((event: Json) => event.type);
    expect(types.filter((type: string) => type === 'user.disabled')).toHaveLength(1);
    expect(types.filter((type: string) => type === 'user.enabled')).toHaveLength(1);
    expect((await signIn(auth, target.username, target.password)).status).toBe(200);
  });

  it('enabling a user who is not disabled changes nothing', async () => {
    const target = await auth.signedInUser(['user']);
    const before = await userState(auth, target.id);
    const res = await enable(auth, admin.accessToken, target.id);
    expect(res.status).toBe(200);
    expect(res.body.user.disabled).toBe(false);
    expect(await userState(auth, target.id)).toEqual(before);
    expect((await me(auth, target.accessToken)).status).toBe(200);
  });

  it('returns 404 user.not_found for an unknown user and 400 for a bad id', async () => {
    expect((await disable(auth, admin.accessToken, 2147483647)).body).toMatchObject({ code: 'user.not_found' });
    expect((await enable(auth, admin.accessToken, 2147483647)).body).toMatchObject({ code: 'user.not_found' });
    expect((await disable(auth, admin.accessToken, 'abc')).status).toBe(400);
    expect((await enable(auth, admin.accessToken, '0')).status).toBe(400);
  });
});

// ---------------------------------------------------------------------------------------------
// 7. The audit log

describe('[GET /api/auth/events]', () => {
  it('lists events newest first', async () => {
    await signUp(auth);
    const res = await listEvents(auth, admin.accessToken, { limit: 30 });
    expect(res.status).toBe(200);
    const listed = ids(res.body.events);
    expect(listed.length).toBeGreaterThan(1);
    expect(listed).toEqual([...listed].sort((a, b) => b - a));
    const newest: { id: string | number } = await auth.db.knex('auth_events').orderBy('id', 'desc').first('id');
    expect(listed[0]).toBe(Number(newest.id));
    for (const event of res.body.events) {
      expect(Object.keys(event).sort()).toEqual(['actorId', 'createdAt', 'details', 'id', 'ip', 'type', 'userAgent', 'userId']);
      expect(event.createdAt).toBe(new Date(event.createdAt).toISOString());
    }
  });

  it("records a role change with the admin as actor and {from, to} as details", async () => {
    const target = await auth.signedInUser(['user']);
    expect((await setRoles(auth, admin.accessToken, target.id, ['user', 'moderator'])).status).toBe(200);
    const res = await listEvents(auth, admin.accessToken, { userId: target.id, type: 'user.roles_changed' });
    expect(res.status).toBe(200);
    expect(res.body.events).toHaveLength(1);
    expect(res.body.events[0]).toMatchObject({
      type: 'user.roles_changed',
      userId: target.id,
      actorId: admin.id,
      details: { from: ['user'], to: ['user', 'moderator'] },
    });
  });

  it('filters by user id and by type', async () => {
    const target = await auth.signedInUser(['user']);
    await signIn(auth, target.username, 'wrong-password-1');
    await signIn(auth, target.username, 'wrong-password-2');
    expect((await disable(auth, admin.accessToken, target.id)).status).toBe(200);
    await signIn(auth, target.username, target.password);

    const mine = await listEvents(auth, admin.accessToken, { userId: target.id });
    expect(mine.status).toBe(200);
    expect(mine.body.events.map((event: Json) => event.type)).toEqual([
      'signin.failure',
      'user.disabled',
      'signin.failure',
      'signin.failure',
      'signin.success',
      'user.signup',
    ]);
    expect(mine.body.events.every((event: Json) => event.userId === target.id)).toBe(true);
    expect(mine.body.nextBefore).toBeNull();

    const failures = await listEvents(auth, admin.accessToken, { userId: target.id, type: 'signin.failure' });
    expect(failures.body.events.map((event: Json) => event.details)).toEqual([
      { username: target.username, reason: 'disabled' },
      { username: target.username, reason: 'invalid_credentials' },
      { username: target.username, reason: 'invalid_credentials' },
    ]);

    const disabled = await listEvents(auth, admin.accessToken, { type: 'user.disabled', limit: 200 });
    expect(disabled.body.events.length).toBeGreaterThan(0);
    expect(disabled.body.events.every((event: Json) => event.type === 'user.disabled')).toBe(true);
    expect(disabled.body.events.find((event: Json) => event.userId === target.id)).toMatchObject({ actorId: admin.id });
  });

  it('pages with limit and the nextBefore cursor, ending with nextBefore null', async () => {
    const target = await auth.signedInUser(['user']);
    for (let i = 0; i < 3; i++) await signIn(auth, target.username, `wrong-password-${i}`);
    const all = await listEvents(auth, admin.accessToken, { userId: target.id, limit: 200 });
    const allIds = ids(all.body.events);
    expect(allIds).toHaveLength(5); // sign-up, sign-in, three failures

    const first = await listEvents(auth, admin.accessToken, { userId: target.id, limit: 2 });
    expect(ids(first.body.events)).toEqual(allIds.slice(0, 2));
    expect(first.body.nextBefore).toBe(allIds[1]);

    const second = await listEvents(auth, admin.accessToken, { userId: target.id, limit: 2, before: first.body.nextBefore });
    expect(ids(second.body.events)).toEqual(allIds.slice(2, 4));
    expect(second.body.nextBefore).toBe(allIds[3]);

    const last = await listEvents(auth, admin.accessToken, { userId: target.id, limit: 2, before: second.body.nextBefore });
    expect(ids(last.body.events)).toEqual(allIds.slice(4));
    expect(last.body.nextBefore).toBeNull();
  });

  it.each([
    ['an unknown type', { type: 'user.deleted' }],
    ['a limit over 200', { limit: 201 }],
    ['a limit of 0', { limit: 0 }],
    ['a cursor of 0', { before: 0 }],
    ['a user id that is not a number', { userId: 'me' }],
    ['an unknown query parameter', { after: 1 }],
  ])('returns 400 request.invalid_input for %s', async (_label, query) => {
    const res = await listEvents(auth, admin.accessToken, query);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'request.invalid_input' });
  });

  it('never records a password or a token', async () => {
    const target = await auth.signedInUser(['user']);
    const secrets = [target.password, target.accessToken, target.refreshToken];
    const wrongPassword = `${target.password}-wrong`;
    secrets.push(wrongPassword);
    await signIn(auth, target.username, wrongPassword);
    const refreshed = await refresh(auth, target.refreshToken);
    expect(refreshed.status).toBe(200);
    secrets.push(refreshed.body.accessToken, refreshed.body.refreshToken);
    // The retired refresh token presented again: reuse detection.
    expect((await refresh(auth, target.refreshToken)).status).toBe(403);
    const second = await signIn(auth, target.username, target.password);
    secrets.push(second.body.accessToken, second.body.refreshToken);
    expect((await auth.call('POST', '/api/auth/signout', { body: { refreshToken: second.body.refreshToken } })).status).toBe(200);
    // Reuse detection revoked the access tokens issued before it; the second session's is newer.
    expect((await auth.call('POST', '/api/auth/signout-all', { token: second.body.accessToken })).status).toBe(200);
    expect((await setRoles(auth, admin.accessToken, target.id, ['user', 'moderator'])).status).toBe(200);
    expect((await disable(auth, admin.accessToken, target.id)).status).toBe(200);

    const res = await listEvents(auth, admin.accessToken, { userId: target.id, limit: 200 });
    const types = res.body.events.map((event: Json) => event.type);
    for (const type of ['signin.failure', 'token.refresh', 'signout', 'signout.all', 'token.reuse_detected', 'user.roles_changed', 'user.disabled']) {
      expect(types).toContain(type);
    }
    const text = JSON.stringify(res.body);
    for (const secret of secrets) expect(text).not.toContain(secret);
    expect(text).not.toContain(admin.accessToken);
  });
});

// ---------------------------------------------------------------------------------------------
// 8. The revocation feed

describe('[GET /internal/revocations]', () => {
  it('lists a user whose roles changed with their current token version, until one token lifetime (+300 s) passed', async () => {
    const h = await scenarioHarness();
    const boss = await h.signedInUser(['user', 'admin']);
    const untouched = await h.signedInUser(['user']);
    const target = await h.signedInUser(['user']);

    const feed = async () => {
      const res = await fetch(`${h.url}/internal/revocations`);
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('no-store');
      const body: Json = await res.json();
      return body.revocations as { sub: string; ver: number }[];
    };
    const entryOf = async (userId: number) => (await feed()).find((entry) => entry.sub === String(userId));

    expect(await entryOf(target.id)).toBeUndefined();

    expect((await setRoles(h, boss.accessToken, target.id, ['user', 'moderator'])).status).toBe(200);
    expect(await entryOf(target.id)).toEqual({ sub: String(target.id), ver: await tokenVersion(h, target.id) });
    expect((await setRoles(h, boss.accessToken, target.id, ['user'])).status).toBe(200);
    const version = await tokenVersion(h, target.id);
    expect(version).toBe(2);
    expect(await entryOf(target.id)).toEqual({ sub: String(target.id), ver: 2 });
    expect(await entryOf(untouched.id)).toBeUndefined();
    // No auth is needed: the services behind the gateway poll it.

    h.clock.advance(TEST_CONFIG.accessTokenTtlSeconds + 300 - 1);
    expect(await entryOf(target.id)).toEqual({ sub: String(target.id), ver: 2 });
    h.clock.advance(2);
    expect(await entryOf(target.id)).toBeUndefined();
    expect(await feed()).toEqual([]);
  });

  it('lists a disabled user, and never a user who was never revoked', async () => {
    const target = await auth.signedInUser(['user']);
    const untouched = await auth.signedInUser(['user']);
    expect((await disable(auth, admin.accessToken, target.id)).status).toBe(200);
    const res = await auth.call('GET', '/internal/revocations');
    expect(res.status).toBe(200);
    expect(res.body.revocations).toContainEqual({ sub: String(target.id), ver: await tokenVersion(auth, target.id) });
    expect(res.body.revocations.map((entry: Json) => entry.sub)).not.toContain(String(untouched.id));
  });
});

// ---------------------------------------------------------------------------------------------
// 9. The bootstrap admin

describe('bootstrap admin', () => {
  const deps = () => ({ passwords: createPasswordHasher(4), clock: auth.clock.now, logger: createSilentLogger() });

  it('creates a user with the roles user and admin that can sign in and administer', async () => {
    const account = buildUser();
    await ensureBootstrapAdmin(auth.db.knex, account, deps());
    const res = await signIn(auth, account.username, account.password);
    expect(res.status).toBe(200);
    expect(res.body.roles).toEqual(['ROLE_USER', 'ROLE_ADMIN']);
    expect(await rolesInDb(auth, res.body.id)).toEqual(['user', 'admin']);
    expect((await listUsers(auth, res.body.accessToken, { q: account.username })).status).toBe(200);

    const events = await listEvents(auth, admin.accessToken, { userId: res.body.id, type: 'admin.created' });
    expect(events.body.events).toHaveLength(1);
    expect(events.body.events[0]).toMatchObject({ type: 'admin.created', userId: res.body.id, details: { via: 'env' } });
  });

  it('never overwrites an existing user: a second call with another password leaves the first one working', async () => {
    const account = buildUser();
    await ensureBootstrapAdmin(auth.db.knex, account, deps());
    const changed = { ...account, password: `${account.password}-changed`, email: buildUser().email };
    await ensureBootstrapAdmin(auth.db.knex, changed, deps());
    await ensureBootstrapAdmin(auth.db.knex, { ...changed, username: account.username.toUpperCase() }, deps());

    expect((await signIn(auth, account.username, account.password)).status).toBe(200);
    expect((await signIn(auth, account.username, changed.password)).status).toBe(401);
    const matching = await auth.db.knex('users').whereRaw('lower(username) = lower(?)', [account.username]).count({ n: '*' }).first();
    expect(Number(matching?.n)).toBe(1);
    expect(await auth.db.knex('users').whereRaw('lower(email) = lower(?)', [changed.email]).first()).toBeUndefined();

    const id = (await signIn(auth, account.username, account.password)).body.id;
    const events = await listEvents(auth, admin.accessToken, { userId: id, type: 'admin.created' });
    expect(events.body.events).toHaveLength(1);
  });

  it('keeps roles changed through the API after the first start', async () => {
    const account = buildUser();
    await ensureBootstrapAdmin(auth.db.knex, account, deps());
    const created = await signIn(auth, account.username, account.password);
    expect((await setRoles(auth, admin.accessToken, created.body.id, ['user'])).status).toBe(200);
    await ensureBootstrapAdmin(auth.db.knex, account, deps());
    expect(await rolesInDb(auth, created.body.id)).toEqual(['user']);
  });

  it('creates one admin, and throws in none, when several instances start at once', async () => {
    const account = buildUser();
    const results = await Promise.allSettled([1, 2, 3].map(() => ensureBootstrapAdmin(auth.db.knex, account, deps())));
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    const rows: { id: number }[] = await auth.db.knex('users').whereRaw('lower(username) = lower(?)', [account.username]).select('id');
    expect(rows).toHaveLength(1);
    const [row] = rows as [{ id: number }];
    expect(await rolesInDb(auth, row.id)).toEqual(['user', 'admin']);
    const events = await listEvents(auth, admin.accessToken, { userId: row.id, type: 'admin.created' });
    expect(events.body.events).toHaveLength(1);
  });

  it('creates nothing, and does not throw, when the email is taken by another user', async () => {
    const existing = await signUp(auth);
    const account = buildUser({ email: existing.email });
    await expect(ensureBootstrapAdmin(auth.db.knex, account, deps())).resolves.toBeUndefined();
    expect(await auth.db.knex('users').whereRaw('lower(username) = lower(?)', [account.username]).first()).toBeUndefined();
    expect(await rolesInDb(auth, existing.id)).toEqual(['user']);
  });
});

describe('bootstrap admin configuration (loadConfig)', () => {
  const account = { ADMIN_USERNAME: 'root', ADMIN_EMAIL: 'root@example.test', ADMIN_PASSWORD: 'a-long-bootstrap-password' };

  it('throws naming ADMIN_USERNAME when only ADMIN_USERNAME is set', () => {
    expect(() => loadConfig({ ADMIN_USERNAME: account.ADMIN_USERNAME })).toThrow(/ADMIN_USERNAME/);
  });

  it.each([
    ['only ADMIN_EMAIL', { ADMIN_EMAIL: account.ADMIN_EMAIL }],
    ['no ADMIN_PASSWORD', { ADMIN_USERNAME: account.ADMIN_USERNAME, ADMIN_EMAIL: account.ADMIN_EMAIL }],
    ['an empty ADMIN_PASSWORD', { ...account, ADMIN_PASSWORD: '' }],
  ])('throws naming ADMIN_USERNAME with %s', (_label, env) => {
    expect(() => loadConfig(env)).toThrow(/ADMIN_USERNAME/);
  });

  it('sets bootstrapAdmin when all three are set', () => {
    expect(loadConfig(account).bootstrapAdmin).toEqual({
      username: account.ADMIN_USERNAME,
      email: account.ADMIN_EMAIL,
      password: account.ADMIN_PASSWORD,
    });
  });

  it("accepts ADMIN_PASSWORD alone (the CLI's way) and sets no bootstrapAdmin", () => {
    const config = loadConfig({ ADMIN_PASSWORD: account.ADMIN_PASSWORD });
    expect(config.bootstrapAdmin).toBeUndefined();
  });

  it('sets no bootstrapAdmin when none of the three is set', () => {
    expect(loadConfig({}).bootstrapAdmin).toBeUndefined();
  });
});
