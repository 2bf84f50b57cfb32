import { createPublicKey } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { createSilentLogger } from '@gatehouse/common';
import { buildUser, readJson } from '@gatehouse/testing';
import { createKeyStore, ensureSigningKey } from '../src/services/signing-keys';
import { startAuth, TEST_CONFIG, type AuthHarness } from './helpers';

let auth: AuthHarness;

beforeAll(async () => {
  auth = await startAuth();
});

afterAll(async () => {
  await auth?.close();
});

/** The SQL of every statement the auth app sent while `work` ran, transaction control included. */
async function statementsOf(work: () => Promise<void>): Promise<string[]> {
  const statements: string[] = [];
  const record = (query: { sql: string }) => statements.push(query.sql);
  auth.db.knex.on('query', record);
  try {
    await work();
  } finally {
    auth.db.knex.off('query', record);
  }
  return statements;
}

async function signUp(body: unknown) {
  const res = await auth.post('/api/auth/signup', body);
  return { status: res.status, body: await readJson(res) };
}

async function signIn(username: string, password: string) {
  const res = await auth.post('/api/auth/signin', { username, password });
  return { status: res.status, body: await readJson(res) };
}

describe('[POST /api/auth/signup]', () => {
  it('returns 201 with the tutorial message and stores a bcrypt hash, never the password', async () => {
    const user = buildUser();
    const res = await signUp(user);
    expect(res).toEqual({ status: 201, body: { message: 'User registered successfully!' } });

    const row = await auth.db.knex('users').whereRaw('lower(username) = lower(?)', [user.username]).first();
    expect(row.password_hash).toMatch(/^\$2[aby]\$04\$/);
    expect(JSON.stringify(row)).not.toContain(user.password);
    const roles = await auth.db.knex('user_roles').join('roles', 'roles.id', 'user_roles.role_id').where({ user_id: row.id }).pluck('name');
    expect(roles).toEqual(['user']);
  });

  it('stores the user, the role and the audit event in one statement: one round trip to the database', async () => {
    const statements = await statementsOf(async () => {
      expect((await signUp(buildUser())).status).toBe(201);
    });
    expect(statements).toHaveLength(1);
    expect(statements[0]).toMatch(/INSERT INTO users[\s\S]*INSERT INTO user_roles[\s\S]*INSERT INTO auth_events/);
  });

  it('returns 400 "Failed! Username is already in use!" for the same username in another case', async () => {
    const user = buildUser();
    await signUp(user);
    const again = await signUp(buildUser({ username: user.username.toUpperCase() }));
    expect(again.status).toBe(400);
    expect(again.body).toMatchObject({ message: 'Failed! Username is already in use!', code: 'user.username_taken' });
  });

  it('returns 400 "Failed! Email is already in use!" for the same email in another case', async () => {
    const user = buildUser();
    await signUp(user);
    const again = await signUp(buildUser({ email: user.email.toUpperCase() }));
    expect(again.status).toBe(400);
    expect(again.body).toMatchObject({ message: 'Failed! Email is already in use!', code: 'user.email_taken' });
  });

  it('lets exactly one of several racing sign-ups of one username through, and answers the rest 400', async () => {
    const username = buildUser().username;
    const results = await Promise.all(Array.from({ length: 8 }, () => signUp(buildUser({ username }))));
    const statuses = results.map((result) => result.status).sort();
    expect(statuses).toEqual([201, 400, 400, 400, 400, 400, 400, 400]);
    for (const result of results.filter((r) => r.status === 400)) {
      expect(result.body.message).toBe('Failed! Username is already in use!');
    }
    const count = await auth.db.knex('users').whereRaw('lower(username) = lower(?)', [username]).count({ n: '*' }).first();
    expect(Number(count?.n)).toBe(1);
  });

  it('never grants moderator or admin through sign-up, whatever roles are sent', async () => {
    const user = buildUser();
    const res = await signUp({ ...user, roles: ['admin', 'moderator'] });
    expect(res.status).toBe(201);
    const signedIn = await signIn(user.username, user.password);
    expect(signedIn.body.roles).toEqual(['ROLE_USER']);
    expect(jwt.decode(signedIn.body.accessToken)).toMatchObject({ roles: ['user'] });
  });

  it('returns 400 "Failed! Role does not exist: X" for an unknown role and creates no user', async () => {
    const user = buildUser();
    const res = await signUp({ ...user, roles: ['user', 'superuser'] });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ message: 'Failed! Role does not exist: superuser', code: 'user.unknown_role' });
    expect(await auth.db.knex('users').where({ username: user.username }).first()).toBeUndefined();
  });

  it.each([
    ['a too short password', { password: 'short' }, 'password'],
    ['a password over 72 bytes (bcrypt would truncate it)', { password: 'é'.repeat(37) }, 'password'],
    ['a malformed email', { email: 'not-an-email' }, 'email'],
    ['a username with spaces', { username: 'bad name' }, 'username'],
    ['a too long username', { username: 'x'.repeat(33) }, 'username'],
    ['a number for a username', { username: 12345 }, 'username'],
    ['an unknown field', { isAdmin: true }, ''],
  ])('returns 400 request.invalid_input for %s, naming the field', async (_label, override, field) => {
    const user = { ...buildUser(), ...override };
    const res = await signUp(user);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('request.invalid_input');
    expect(JSON.stringify(res.body.details)).toContain(field);
  });

  it('returns 400 request.invalid_json for a malformed body and keeps serving', async () => {
    const res = await auth.post('/api/auth/signup', '{"username": ');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'request.invalid_json' });
    expect((await signUp(buildUser())).status).toBe(201);
  });

  it('returns 413 for a body over the size limit', async () => {
    const res = await auth.post('/api/auth/signup', { ...buildUser(), padding: 'x'.repeat(64 * 1024) });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ code: 'request.too_large' });
  });
});

describe('[POST /api/auth/signin]', () => {
  it('returns the tutorial fields and an RS256 token that verifies with the published JWKS', async () => {
    const user = buildUser();
    await signUp(user);
    const res = await signIn(user.username, user.password);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      id: expect.any(Number),
      username: user.username,
      email: user.email,
      roles: ['ROLE_USER'],
      accessToken: expect.any(String),
      refreshToken: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      tokenType: 'Bearer',
      expiresIn: TEST_CONFIG.accessTokenTtlSeconds,
    });

    const jwks = await readJson(await fetch(`${auth.url}/.well-known/jwks.json`));
    const decoded = jwt.decode(res.body.accessToken, { complete: true });
    expect(decoded?.header).toMatchObject({ alg: 'RS256', kid: jwks.keys[0].kid });
    const key = createPublicKey({ key: jwks.keys[0], format: 'jwk' });
    const claims = jwt.verify(res.body.accessToken, key, {
      algorithms: ['RS256'],
      issuer: TEST_CONFIG.issuer,
      audience: TEST_CONFIG.audience,
    });
    expect(claims).toMatchObject({
      sub: String(res.body.id),
      id: res.body.id,
      username: user.username,
      roles: ['user'],
      ver: 0,
      sid: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
  });

  it('treats a username no sign-up could make as unknown, even one PostgreSQL lower() folds onto a real one', async () => {
    const user = buildUser({ username: `admin_i_${Date.now()}` });
    await signUp(user);
    const lookAlike = user.username.replace(/i/g, 'İ');
    expect(await signIn(lookAlike, user.password)).toMatchObject({ status: 401, body: { code: 'auth.invalid_credentials' } });
    expect((await signIn(user.username, user.password)).status).toBe(200);
  });

  it('matches the username case-insensitively', async () => {
    const user = buildUser();
    await signUp(user);
    expect((await signIn(user.username.toUpperCase(), user.password)).status).toBe(200);
  });

  it('answers an unknown user and a wrong password with the same 401 body', async () => {
    const user = buildUser();
    await signUp(user);
    const wrongPassword = await signIn(user.username, 'not-the-password');
    const unknownUser = await signIn(buildUser().username, user.password);
    expect(wrongPassword.status).toBe(401);
    expect(unknownUser.status).toBe(401);
    const { requestId: _a, ...first } = wrongPassword.body;
    const { requestId: _b, ...second } = unknownUser.body;
    expect(first).toEqual({ message: 'Invalid username or password!', code: 'auth.invalid_credentials' });
    expect(second).toEqual(first);
  });

  it('returns 400 for a missing password instead of trying it', async () => {
    const res = await auth.post('/api/auth/signin', { username: 'someone' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'request.invalid_input' });
  });
});

describe('round trips to the database of a sign-in and a refresh', () => {
  // A user read brings the roles in the same query; under a transaction the user's row is
  // locked first, then read. A sign-in makes 5 statements and a refresh 7, plus BEGIN and COMMIT.
  const withoutTransactionControl = (statements: string[]) => statements.filter((sql) => !/^(BEGIN|COMMIT)\b/i.test(sql));
  const userWithRoles = /^select "users"\.\*, ARRAY\(SELECT roles\.name .* where /;
  const userLock = /^select "id" from "users" where "id" = \$\d+ limit \$\d+ for no key update$/;

  it('signs in with one read of the user, then one transaction: the user locked and read again, the token, the event', async () => {
    const user = buildUser();
    await signUp(user);
    const statements = await statementsOf(async () => {
      expect((await signIn(user.username, user.password)).status).toBe(200);
    });
    expect(statements).toHaveLength(7);
    expect(withoutTransactionControl(statements)).toEqual([
      expect.stringMatching(userWithRoles),
      expect.stringMatching(userLock),
      expect.stringMatching(userWithRoles),
      expect.stringMatching(/^insert into "refresh_tokens"/),
      expect.stringMatching(/^insert into "auth_events"/),
    ]);
  });

  it('refreshes with one lookup of the token, then one transaction: the user locked and read, the token locked, the successor, the event', async () => {
    const user = buildUser();
    await signUp(user);
    const { refreshToken } = (await signIn(user.username, user.password)).body;
    const statements = await statementsOf(async () => {
      expect((await auth.post('/api/auth/refreshtoken', { refreshToken })).status).toBe(200);
    });
    expect(statements).toHaveLength(9);
    expect(withoutTransactionControl(statements)).toEqual([
      expect.stringMatching(/^select \* from "refresh_tokens" where "token_hash" = /),
      expect.stringMatching(userLock),
      expect.stringMatching(userWithRoles),
      expect.stringMatching(/^select \* from "refresh_tokens" where "token_hash" = .* for update$/),
      expect.stringMatching(/^insert into "refresh_tokens"/),
      expect.stringMatching(/^update "refresh_tokens"/),
      expect.stringMatching(/^insert into "auth_events"/),
    ]);
  });
});

describe('[GET /.well-known/jwks.json]', () => {
  it('publishes the public key only, at both the well-known and the gateway path', async () => {
    const direct = await readJson(await fetch(`${auth.url}/.well-known/jwks.json`));
    const viaApi = await (await fetch(`${auth.url}/api/auth/.well-known/jwks.json`)).json();
    expect(viaApi).toEqual(direct);
    expect(direct.keys).toHaveLength(1);
    expect(direct.keys[0]).toMatchObject({ kty: 'RSA', alg: 'RS256', use: 'sig', kid: auth.keys.current.kid });
    for (const privateField of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(direct.keys[0]).not.toHaveProperty(privateField);
  });

  it('keeps the signing key in the database, so another instance signs with the same kid', async () => {
    await ensureSigningKey(auth.db.knex, { logger: createSilentLogger(), clock: auth.clock.now });
    const again = await createKeyStore(auth.db.knex, { logger: createSilentLogger(), clock: auth.clock.now, accessTokenTtlSeconds: 900 });
    expect(again.current.kid).toBe(auth.keys.current.kid);
    expect(await auth.db.knex('signing_keys').count({ n: '*' }).first()).toMatchObject({ n: expect.anything() });
    const rows = await auth.db.knex('signing_keys').select('kid');
    expect(rows).toEqual([{ kid: auth.keys.current.kid }]);
  });
});

describe('health', () => {
  it('[GET /healthz] and [GET /readyz] answer 200 while the database is reachable', async () => {
    expect((await fetch(`${auth.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${auth.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { database: 'ok' } });
  });

  it('answers an unknown path with a JSON 404', async () => {
    const res = await fetch(`${auth.url}/api/auth/nothing-here`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 'request.not_found' });
  });
});

describe('bad requests never become a 500', () => {
  it('[POST /api/auth/signin] returns 400 for a username with a NUL character', async () => {
    const res = await auth.post('/api/auth/signin', { username: 'al\u0000ice', password: 'whatever-password' });
    expect(res.status).toBe(400);
    expect(await readJson(res)).toMatchObject({ code: 'request.invalid_input' });
  });

  it('answers an unknown HTTP method with a JSON 405', async () => {
    const res = await fetch(`${auth.url}/api/auth/signin`, { method: 'PROPFIND' });
    expect(res.status).toBe(405);
    expect(await readJson(res)).toMatchObject({ code: 'request.method_not_allowed' });
  });

  it('answers a body that is not valid gzip with 400 request.invalid_body', async () => {
    const res = await auth.post('/api/auth/signin', 'definitely not gzip', { 'content-encoding': 'gzip' });
    expect(res.status).toBe(400);
    expect(await readJson(res)).toMatchObject({ code: 'request.invalid_body' });
  });

  it('[POST /api/auth/signup] reports a taken username before an unknown role, as the tutorial does', async () => {
    const user = buildUser();
    await signUp(user);
    const res = await signUp({ ...buildUser({ username: user.username }), roles: ['superuser'] });
    expect(res.status).toBe(400);
    expect(res.body.message).toBe('Failed! Username is already in use!');
    const emailTaken = await signUp({ ...buildUser({ email: user.email }), roles: ['superuser'] });
    expect(emailTaken.body.message).toBe('Failed! Email is already in use!');
  });
});
