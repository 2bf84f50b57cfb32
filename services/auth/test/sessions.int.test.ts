import { createHash, randomBytes } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { buildUser, readJson, type Json } from '@gatehouse/testing';
import type { RoleName } from '@gatehouse/tokens';
import type { RefreshTokenRow } from '../src/db/repositories/refresh-token.repository';
import { createAdminService, type AdminService } from '../src/services/admin.service';
import { startAuth, TEST_CONFIG, type AuthHarness, type SignedIn } from './helpers';

// Sessions: refresh tokens (rotation, reuse detection, the reuse interval, expiry), sign-out,
// the caller's profile, disabled users and the audit log.

const REFRESH_TOKEN = /^[A-Za-z0-9_-]{43}$/;
const SIGNED_OUT = { message: "You've been signed out!" };
const REFRESH_ERRORS = {
  unknown: { code: 'auth.refresh_token_unknown', message: 'Refresh token is not in database!' },
  expired: { code: 'auth.refresh_token_expired', message: 'Refresh token was expired. Please make a new signin request' },
  revoked: { code: 'auth.refresh_token_revoked', message: 'Refresh token was revoked. Please make a new signin request' },
  reused: {
    code: 'auth.refresh_token_reused',
    message: 'Refresh token was already used; the session has been ended. Please make a new signin request',
  },
};

/** Default settings: the reuse interval is off. */
let auth: AuthHarness;
let admin: AdminService;
/** The same app with `refreshReuseIntervalSeconds: 10`, over a database of its own. */
let reuse: AuthHarness;

/** Every password and token this file has seen, for the audit log's leak check. */
const secrets = new Set<string>();

beforeAll(async () => {
  auth = await startAuth();
  reuse = await startAuth({ config: { refreshReuseIntervalSeconds: 10 } });
  admin = createAdminService({ knex: auth.db.knex, clock: auth.clock.now });
});

afterAll(async () => {
  await auth?.close();
  await reuse?.close();
});

interface Reply {
  status: number;
  body: Json;
}

/** A JSON POST with extra headers (user agent, forwarded-for, authorization); remembers tokens it gets. */
async function send(h: AuthHarness, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await h.post(path, body, headers);
  const reply: Reply = { status: res.status, body: await readJson(res) };
  for (const field of ['accessToken', 'refreshToken']) {
    if (typeof reply.body?.[field] === 'string') secrets.add(reply.body[field]);
  }
  return reply;
}

const refresh = (h: AuthHarness, refreshToken: unknown, headers?: Record<string, string>) =>
  send(h, '/api/auth/refreshtoken', { refreshToken }, headers);

const signIn = (h: AuthHarness, username: string, password: string, headers?: Record<string, string>) =>
  send(h, '/api/auth/signin', { username, password }, headers);

/** A fresh user, signed in once. */
async function newSession(h: AuthHarness = auth, roles?: RoleName[]): Promise<SignedIn> {
  const user = await h.signedInUser(roles);
  for (const secret of [user.password, user.accessToken, user.refreshToken]) secrets.add(secret);
  return user;
}

/** A refusal: status and code, with a message for people. */
function expectRefused(reply: Reply, status: number, error: { code: string; message?: string }): void {
  expect({ status: reply.status, code: reply.body?.code }).toEqual({ status, code: error.code });
  expect(reply.body.message).toEqual(error.message ?? expect.stringMatching(/\S/));
}

function claimsOf(accessToken: string): Json {
  return jwt.decode(accessToken);
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

type StoredToken = RefreshTokenRow & { client_ip: string | null; user_agent: string | null };

async function storedToken(h: AuthHarness, refreshToken: string): Promise<StoredToken | undefined> {
  return h.db.knex('refresh_tokens').where({ token_hash: sha256(refreshToken) }).first();
}

async function familyRows(h: AuthHarness, familyId: string): Promise<StoredToken[]> {
  return h.db.knex('refresh_tokens').where({ family_id: familyId }).orderBy('id');
}

async function tokensOf(h: AuthHarness, userId: number): Promise<StoredToken[]> {
  return h.db.knex('refresh_tokens').where({ user_id: userId }).orderBy('id');
}

const isLive = (row: StoredToken) => row.revoked_at === null && row.used_at === null;

async function tokenVersion(h: AuthHarness, userId: number): Promise<number> {
  const row: { token_version: number } = await h.db.knex('users').where({ id: userId }).first('token_version');
  return row.token_version;
}

interface EventRow {
  type: string;
  ip: string | null;
  user_agent: string | null;
  details: Json;
}

async function eventsOf(h: AuthHarness, userId: number): Promise<EventRow[]> {
  return h.db.knex('auth_events').where({ user_id: userId }).orderBy('id').select('type', 'ip', 'user_agent', 'details');
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs `first` and `second` together, `second` starting `offsetMs` later (earlier when negative):
 * a loop over offsets meets the interleavings of two requests. A delay, never a timing assertion.
 */
function race<A, B>(offsetMs: number, first: () => Promise<A>, second: () => Promise<B>): Promise<[A, B]> {
  return Promise.all([pause(Math.max(0, -offsetMs)).then(first), pause(Math.max(0, offsetMs)).then(second)]);
}

const me = (h: AuthHarness, token?: string) => h.call('GET', '/api/auth/me', { token });

describe('[POST /api/auth/signin] refresh token', () => {
  it('returns a 43-character refresh token and stores only its sha256 hash, with family, expiry, ip and user agent', async () => {
    const user = buildUser();
    await send(auth, '/api/auth/signup', user);
    secrets.add(user.password);
    const res = await signIn(auth, user.username, user.password, {
      'user-agent': 'sessions-test/1.0 (signin)',
      'x-forwarded-for': '203.0.113.7',
    });
    expect(res.status).toBe(200);
    expect(res.body.refreshToken).toMatch(REFRESH_TOKEN);

    const row = await storedToken(auth, res.body.refreshToken);
    expect(row).toMatchObject({
      token_hash: sha256(res.body.refreshToken),
      family_id: claimsOf(res.body.accessToken).sid,
      user_id: res.body.id,
      client_ip: '203.0.113.7',
      user_agent: 'sessions-test/1.0 (signin)',
      used_at: null,
      replaced_by: null,
      successor_sealed: null,
      revoked_at: null,
    });
    expect(row?.created_at.getTime()).toBe(auth.clock.now().getTime());
    expect(row?.expires_at.getTime()).toBe(auth.clock.now().getTime() + TEST_CONFIG.refreshTokenTtlSeconds * 1000);

    const everyRow = JSON.stringify(await auth.db.knex('refresh_tokens').select('*'));
    expect(everyRow).not.toContain(res.body.refreshToken);
  });

  it('starts a new family for every sign-in', async () => {
    const user = await newSession();
    const again = await signIn(auth, user.username, user.password);
    const first = await storedToken(auth, user.refreshToken);
    const second = await storedToken(auth, again.body.refreshToken);
    expect(first?.family_id).toEqual(expect.stringMatching(/^[0-9a-f-]{36}$/));
    expect(second?.family_id).toEqual(expect.stringMatching(/^[0-9a-f-]{36}$/));
    expect(second?.family_id).not.toBe(first?.family_id);
  });
});

describe('[POST /api/auth/refreshtoken]', () => {
  it('returns a new access and refresh token and retires the old one', async () => {
    const user = await newSession();
    const res = await refresh(auth, user.refreshToken);
    expect(res).toEqual({
      status: 200,
      body: {
        accessToken: expect.any(String),
        refreshToken: expect.stringMatching(REFRESH_TOKEN),
        tokenType: 'Bearer',
        expiresIn: TEST_CONFIG.accessTokenTtlSeconds,
      },
    });
    expect(res.body.refreshToken).not.toBe(user.refreshToken);
    expect(res.body.accessToken).not.toBe(user.accessToken);

    const old = await storedToken(auth, user.refreshToken);
    const successor = await storedToken(auth, res.body.refreshToken);
    expect(successor).toMatchObject({ family_id: old?.family_id, user_id: user.id, used_at: null, revoked_at: null });
    expect(old).toMatchObject({ replaced_by: successor?.id, revoked_at: null, successor_sealed: null });
    expect(old?.used_at?.getTime()).toBe(auth.clock.now().getTime());
    expect((await me(auth, res.body.accessToken)).status).toBe(200);
  });

  it("issues access tokens for the same session, with the user's current roles and token version", async () => {
    const user = await newSession();
    const signInClaims = claimsOf(user.accessToken);
    await admin.setRoles(user.id, ['user', 'moderator'], {});

    const res = await refresh(auth, user.refreshToken);
    expect(res.status).toBe(200);
    expect(claimsOf(res.body.accessToken)).toMatchObject({
      sub: String(user.id),
      id: user.id,
      username: user.username,
      sid: signInClaims.sid,
      roles: ['user', 'moderator'],
      ver: await tokenVersion(auth, user.id),
    });
    expect(claimsOf(res.body.accessToken).ver).toBeGreaterThan(signInClaims.ver);
  });

  it('chains several refreshes in one family, leaving only the latest token live', async () => {
    const user = await newSession();
    const sid = claimsOf(user.accessToken).sid;
    const seen = [user.refreshToken];
    let current = user.refreshToken;
    for (let step = 0; step < 5; step += 1) {
      auth.clock.advance(60);
      const res = await refresh(auth, current);
      expect(res.status).toBe(200);
      expect(claimsOf(res.body.accessToken).sid).toBe(sid);
      current = res.body.refreshToken;
      seen.push(current);
    }
    expect(new Set(seen).size).toBe(6);

    const rows = await familyRows(auth, sid);
    expect(rows).toHaveLength(6);
    expect(rows.filter(isLive).map((row) => row.token_hash)).toEqual([sha256(current)]);
    for (let i = 0; i < 5; i += 1) expect(rows[i]?.replaced_by).toBe(rows[i + 1]?.id);
  });

  it('returns 403 auth.refresh_token_expired once the token has lived refreshTokenTtlSeconds', async () => {
    const early = await newSession();
    const late = await newSession();
    auth.clock.advance(TEST_CONFIG.refreshTokenTtlSeconds - 1);
    expect((await refresh(auth, early.refreshToken)).status).toBe(200);
    auth.clock.advance(2);
    expectRefused(await refresh(auth, late.refreshToken), 403, REFRESH_ERRORS.expired);
  });

  it('returns 403 auth.refresh_token_unknown for a well-formed token it never issued', async () => {
    expectRefused(await refresh(auth, randomBytes(32).toString('base64url')), 403, REFRESH_ERRORS.unknown);
  });

  const wellFormed = randomBytes(32).toString('base64url');
  it.each([
    ['a too short token', { refreshToken: 'abc' }, 'refreshToken'],
    ['a too long token', { refreshToken: `${wellFormed}x` }, 'refreshToken'],
    ['a token with characters outside base64url', { refreshToken: `${wellFormed.slice(0, 42)}+` }, 'refreshToken'],
    ['a padded base64 token', { refreshToken: `${wellFormed.slice(0, 42)}=` }, 'refreshToken'],
    ['an empty token', { refreshToken: '' }, 'refreshToken'],
    ['a number', { refreshToken: 12345 }, 'refreshToken'],
    ['an array', { refreshToken: [wellFormed] }, 'refreshToken'],
    ['null', { refreshToken: null }, 'refreshToken'],
    ['a missing field', {}, 'refreshToken'],
    // zod names an unknown key in the message, with an empty path.
    ['an extra field', { refreshToken: wellFormed, sessionId: 'x' }, 'sessionId'],
  ])('returns 400 request.invalid_input for %s, naming the field', async (_label, body, field) => {
    const res = await send(auth, '/api/auth/refreshtoken', body);
    expectRefused(res, 400, { code: 'request.invalid_input' });
    expect(JSON.stringify(res.body.details)).toContain(field);
  });
});

describe('[POST /api/auth/refreshtoken] reuse detection (reuse interval off)', () => {
  it('ends the family when a thief presents the old token after the owner refreshed', async () => {
    const user = await newSession();
    const sid = claimsOf(user.accessToken).sid;
    const owner = await refresh(auth, user.refreshToken);
    expect(owner.status).toBe(200);

    auth.clock.advance(30);
    expectRefused(await refresh(auth, user.refreshToken), 403, REFRESH_ERRORS.reused);
    expectRefused(await refresh(auth, owner.body.refreshToken), 403, REFRESH_ERRORS.revoked);

    const rows = await familyRows(auth, sid);
    expect(rows.map((row) => row.revoked_reason)).toEqual(['reuse_detected', 'reuse_detected']);
    const events = await eventsOf(auth, user.id);
    expect(events.filter((event) => event.type === 'token.reuse_detected')).toEqual([
      expect.objectContaining({ details: { family: sid } }),
    ]);
  });

  it('ends the family when the owner comes back with the old token after a thief refreshed', async () => {
    const user = await newSession();
    const sid = claimsOf(user.accessToken).sid;
    const thief = await refresh(auth, user.refreshToken);
    expect(thief.status).toBe(200);

    auth.clock.advance(30);
    expectRefused(await refresh(auth, user.refreshToken), 403, REFRESH_ERRORS.reused);
    expectRefused(await refresh(auth, thief.body.refreshToken), 403, REFRESH_ERRORS.revoked);
    expect((await familyRows(auth, sid)).filter((row) => row.revoked_at === null)).toEqual([]);
    expect((await eventsOf(auth, user.id)).map((event) => event.type)).toContain('token.reuse_detected');
  });

  it('ends the family on a second presentation even within the same second', async () => {
    const user = await newSession();
    const first = await refresh(auth, user.refreshToken);
    expect(first.status).toBe(200);
    expectRefused(await refresh(auth, user.refreshToken), 403, REFRESH_ERRORS.reused);
    expectRefused(await refresh(auth, first.body.refreshToken), 403, REFRESH_ERRORS.revoked);
  });

  it("leaves the user's other sessions alone: they refresh as before", async () => {
    const user = await newSession();
    const other = await signIn(auth, user.username, user.password);
    await refresh(auth, user.refreshToken);
    expectRefused(await refresh(auth, user.refreshToken), 403, REFRESH_ERRORS.reused);
    const otherRefreshed = await refresh(auth, other.body.refreshToken);
    expect(otherRefreshed.status).toBe(200);
    expect((await me(auth, otherRefreshed.body.accessToken)).status).toBe(200);
  });

  it('revokes the access tokens issued before it, so the thief\'s access token stops working too', async () => {
    const user = await newSession();
    const thief = await refresh(auth, user.refreshToken);
    expect((await me(auth, thief.body.accessToken)).status).toBe(200);
    const versionBefore = await tokenVersion(auth, user.id);
    expectRefused(await refresh(auth, user.refreshToken), 403, REFRESH_ERRORS.reused);
    expect(await tokenVersion(auth, user.id)).toBe(versionBefore + 1);
    expect((await me(auth, thief.body.accessToken)).status).toBe(401);
    expect((await me(auth, user.accessToken)).status).toBe(401);
  });

  it('lets at most one of 10 concurrent refreshes of one token through and leaves at most one live token', async () => {
    const user = await newSession();
    const sid = claimsOf(user.accessToken).sid;
    const replies = await Promise.all(Array.from({ length: 10 }, () => refresh(auth, user.refreshToken)));
    const statuses = replies.map((reply) => reply.status);
    expect(statuses.filter((status) => status !== 200 && status !== 403)).toEqual([]);
    expect(statuses.filter((status) => status === 200).length).toBeLessThanOrEqual(1);
    const codes = new Set(replies.filter((reply) => reply.status === 403).map((reply) => reply.body.code));
    for (const code of codes) expect([REFRESH_ERRORS.reused.code, REFRESH_ERRORS.revoked.code]).toContain(code);

    const rows = await familyRows(auth, sid);
    expect(rows.filter(isLive).length).toBeLessThanOrEqual(1);
    expect(rows.length).toBeLessThanOrEqual(2);
  });

  it('ends the family even when its successor is refreshed at the same time', async () => {
    const wrong: string[] = [];
    for (let offset = -4; offset < 8; offset += 1) {
      const user = await newSession();
      const successor = (await refresh(auth, user.refreshToken)).body.refreshToken;
      const [next, replayed] = await race(
        offset,
        () => refresh(auth, successor),
        () => refresh(auth, user.refreshToken),
      );
      const live = (await familyRows(auth, claimsOf(user.accessToken).sid)).filter(isLive).length;
      const outcome = `replay ${offset} ms after: successor ${next.status}, replay ${replayed.body.code}, live tokens ${live}`;
      if (![200, 403].includes(next.status) || replayed.body.code !== REFRESH_ERRORS.reused.code || live !== 0) wrong.push(outcome);
    }
    expect(wrong).toEqual([]);
  });
});

describe('[POST /api/auth/refreshtoken] with a 10 s reuse interval', () => {
  it('returns the same successor to a second presentation within the interval and keeps the family', async () => {
    const user = await newSession(reuse);
    const sid = claimsOf(user.accessToken).sid;
    const first = await refresh(reuse, user.refreshToken);
    expect(first.status).toBe(200);

    reuse.clock.advance(5);
    const second = await refresh(reuse, user.refreshToken);
    expect(second.status).toBe(200);
    expect(second.body.refreshToken).toBe(first.body.refreshToken);
    expect(claimsOf(second.body.accessToken)).toMatchObject({ sid, ver: claimsOf(first.body.accessToken).ver });

    const rows = await familyRows(reuse, sid);
    expect(rows).toHaveLength(2);
    expect(rows.map((row) => row.revoked_at)).toEqual([null, null]);
    // The successor is kept sealed under a key from its parent: the row holds no usable token.
    expect(rows[0]?.successor_sealed).toEqual(expect.any(String));
    expect(JSON.stringify(rows)).not.toContain(first.body.refreshToken);

    const next = await refresh(reuse, first.body.refreshToken);
    expect(next.status).toBe(200);
    expect((await familyRows(reuse, sid)).filter(isLive).map((row) => row.token_hash)).toEqual([sha256(next.body.refreshToken)]);
  });

  it('ends the family when the old token comes back after the interval', async () => {
    const user = await newSession(reuse);
    const sid = claimsOf(user.accessToken).sid;
    const first = await refresh(reuse, user.refreshToken);
    expect((await refresh(reuse, user.refreshToken)).body.refreshToken).toBe(first.body.refreshToken);

    reuse.clock.advance(11);
    expectRefused(await refresh(reuse, user.refreshToken), 403, REFRESH_ERRORS.reused);
    expectRefused(await refresh(reuse, first.body.refreshToken), 403, REFRESH_ERRORS.revoked);
    const rows = await familyRows(reuse, sid);
    expect(rows.map((row) => row.revoked_reason)).toEqual(['reuse_detected', 'reuse_detected']);
    expect(rows.map((row) => row.successor_sealed)).toEqual([null, null]);
  });

  it('ends the family when the old token comes back after its successor was used, even within the interval', async () => {
    const user = await newSession(reuse);
    const first = await refresh(reuse, user.refreshToken);
    const second = await refresh(reuse, first.body.refreshToken);
    expect(second.status).toBe(200);
    expectRefused(await refresh(reuse, user.refreshToken), 403, REFRESH_ERRORS.reused);
    expectRefused(await refresh(reuse, second.body.refreshToken), 403, REFRESH_ERRORS.revoked);
  });

  it('answers 10 concurrent refreshes of one token with one and the same successor', async () => {
    const user = await newSession(reuse);
    const sid = claimsOf(user.accessToken).sid;
    const replies = await Promise.all(Array.from({ length: 10 }, () => refresh(reuse, user.refreshToken)));
    expect(replies.map((reply) => reply.status)).toEqual(Array(10).fill(200));
    const successors = new Set(replies.map((reply) => reply.body.refreshToken));
    expect(successors.size).toBe(1);

    const rows = await familyRows(reuse, sid);
    expect(rows).toHaveLength(2);
    expect(rows.filter(isLive).map((row) => row.token_hash)).toEqual([sha256(replies[0]?.body.refreshToken)]);
  });
});

describe('[POST /api/auth/refreshtoken] racing a role change', () => {
  it('never issues an access token with the current ver and stale roles', async () => {
    // From 4 ms before to 34 ms after the role change: the refresh reads the user before,
    // during and after the change's transaction.
    for (let offset = -4; offset < 36; offset += 2) {
      const user = await newSession();
      const [, refreshed] = await race(
        offset,
        () => admin.setRoles(user.id, ['user', 'moderator'], {}),
        () => refresh(auth, user.refreshToken),
      );
      expect(refreshed.status).toBe(200);

      const current = await tokenVersion(auth, user.id);
      const claims = claimsOf(refreshed.body.accessToken);
      const verdict =
        claims.ver < current
          ? 'older ver, refused'
          : claims.ver === current && claims.roles.includes('moderator')
            ? 'current ver and roles'
            : `ver ${claims.ver} (current ${current}) with roles ${claims.roles}`;
      expect(['older ver, refused', 'current ver and roles']).toContain(verdict);
      expect((await me(auth, refreshed.body.accessToken)).status).toBe(claims.ver < current ? 401 : 200);
    }
  });
});

describe('[POST /api/auth/signout]', () => {
  it("ends the access token's session and not another session of the same user", async () => {
    const user = await newSession();
    const other = await signIn(auth, user.username, user.password);
    // Sign out with an access token from a refresh: its session is still the sign-in's family.
    const refreshed = await refresh(auth, user.refreshToken);

    const res = await auth.call('POST', '/api/auth/signout', { token: refreshed.body.accessToken });
    expect(res).toEqual({ status: 200, body: SIGNED_OUT });
    expectRefused(await refresh(auth, refreshed.body.refreshToken), 403, REFRESH_ERRORS.revoked);
    const rows = await familyRows(auth, claimsOf(user.accessToken).sid);
    expect(rows.map((row) => row.revoked_reason)).toEqual(['signout', 'signout']);

    expect((await refresh(auth, other.body.refreshToken)).status).toBe(200);
  });

  it('ends the session of the refresh token in the body, without an access token', async () => {
    const user = await newSession();
    const other = await signIn(auth, user.username, user.password);
    const res = await send(auth, '/api/auth/signout', { refreshToken: user.refreshToken });
    expect(res).toEqual({ status: 200, body: SIGNED_OUT });
    expectRefused(await refresh(auth, user.refreshToken), 403, REFRESH_ERRORS.revoked);
    expect((await refresh(auth, other.body.refreshToken)).status).toBe(200);
  });

  it('ends the session even when a refresh of its token runs at the same time', async () => {
    const wrong: string[] = [];
    for (let offset = -4; offset < 8; offset += 1) {
      const user = await newSession();
      const [refreshed, signedOut] = await race(
        offset,
        () => refresh(auth, user.refreshToken),
        () => auth.call('POST', '/api/auth/signout', { token: user.accessToken }),
      );
      const live = (await familyRows(auth, claimsOf(user.accessToken).sid)).filter(isLive).length;
      const outcome = `signout ${offset} ms after: refresh ${refreshed.status}, signout ${signedOut.status}, live tokens ${live}`;
      if (![200, 403].includes(refreshed.status) || signedOut.status !== 200 || live !== 0) wrong.push(outcome);
    }
    expect(wrong).toEqual([]);
  });

  it('answers 200 when signing out twice or with an unknown refresh token', async () => {
    const user = await newSession();
    const byAccessToken = () => auth.call('POST', '/api/auth/signout', { token: user.accessToken });
    expect(await byAccessToken()).toEqual({ status: 200, body: SIGNED_OUT });
    expect(await byAccessToken()).toEqual({ status: 200, body: SIGNED_OUT });
    expect(await send(auth, '/api/auth/signout', { refreshToken: user.refreshToken })).toEqual({ status: 200, body: SIGNED_OUT });
    const unknown = randomBytes(32).toString('base64url');
    expect(await send(auth, '/api/auth/signout', { refreshToken: unknown })).toEqual({ status: 200, body: SIGNED_OUT });
    expect((await eventsOf(auth, user.id)).filter((event) => event.type === 'signout')).toHaveLength(1);
  });

  it('returns 403 "No token provided!" without an access token or a refresh token', async () => {
    expectRefused(await auth.call('POST', '/api/auth/signout'), 403, { code: 'auth.no_token', message: 'No token provided!' });
    expectRefused(await send(auth, '/api/auth/signout', {}), 403, { code: 'auth.no_token', message: 'No token provided!' });
  });

  it('returns 400 for a malformed refresh token in the body', async () => {
    const res = await send(auth, '/api/auth/signout', { refreshToken: 'not-a-token' });
    expectRefused(res, 400, { code: 'request.invalid_input' });
    expect(JSON.stringify(res.body.details)).toContain('refreshToken');
  });
});

describe('[POST /api/auth/signout-all]', () => {
  it('ends every session of the user, refuses the old access tokens and lets a fresh sign-in work', async () => {
    const user = await newSession();
    const other = await signIn(auth, user.username, user.password);
    const refreshed = await refresh(auth, user.refreshToken);
    const stranger = await newSession();
    const versionBefore = await tokenVersion(auth, user.id);

    const res = await auth.call('POST', '/api/auth/signout-all', { token: refreshed.body.accessToken });
    expect(res).toEqual({ status: 200, body: { message: "You've been signed out of every session!" } });

    expectRefused(await refresh(auth, refreshed.body.refreshToken), 403, REFRESH_ERRORS.revoked);
    expectRefused(await refresh(auth, other.body.refreshToken), 403, REFRESH_ERRORS.revoked);
    const rows = await tokensOf(auth, user.id);
    expect(rows).toHaveLength(3);
    expect(rows.filter((row) => row.revoked_at === null)).toEqual([]);
    expect(new Set(rows.map((row) => row.revoked_reason))).toEqual(new Set(['signout_all']));

    expect(await tokenVersion(auth, user.id)).toBe(versionBefore + 1);
    for (const token of [user.accessToken, other.body.accessToken, refreshed.body.accessToken]) {
      expectRefused(await me(auth, token), 401, { code: 'auth.invalid_token', message: 'Unauthorized!' });
    }
    // Another user's sessions are untouched.
    expect((await me(auth, stranger.accessToken)).status).toBe(200);
    expect((await refresh(auth, stranger.refreshToken)).status).toBe(200);

    const fresh = await signIn(auth, user.username, user.password);
    expect(fresh.status).toBe(200);
    expect(claimsOf(fresh.body.accessToken).ver).toBe(versionBefore + 1);
    expect((await me(auth, fresh.body.accessToken)).status).toBe(200);
    expect((await refresh(auth, fresh.body.refreshToken)).status).toBe(200);
  });

  it('ends every session even when a refresh runs at the same time, and answers neither with a 5xx', async () => {
    const wrong: string[] = [];
    for (let offset = -6; offset < 6; offset += 1) {
      const user = await newSession();
      const [refreshed, signedOut] = await race(
        offset,
        () => refresh(auth, user.refreshToken),
        () => auth.call('POST', '/api/auth/signout-all', { token: user.accessToken }),
      );
      const live = (await tokensOf(auth, user.id)).filter(isLive).length;
      const outcome = `signout-all ${offset} ms after: refresh ${refreshed.status}, signout-all ${signedOut.status}, live tokens ${live}`;
      if (![200, 403].includes(refreshed.status) || signedOut.status !== 200 || live !== 0) wrong.push(outcome);
    }
    expect(wrong).toEqual([]);
  });

  it('returns 403 "No token provided!" without an access token, even with a refresh token in the body', async () => {
    const user = await newSession();
    const res = await send(auth, '/api/auth/signout-all', { refreshToken: user.refreshToken });
    expectRefused(res, 403, { code: 'auth.no_token', message: 'No token provided!' });
    expect((await refresh(auth, user.refreshToken)).status).toBe(200);
  });
});

describe('[GET /api/auth/me]', () => {
  it("returns the token's user in the tutorial's shape, with createdAt", async () => {
    const user = await newSession();
    const row: { created_at: Date; email: string } = await auth.db.knex('users').where({ id: user.id }).first('created_at', 'email');
    const res = await me(auth, user.accessToken);
    expect(res).toEqual({
      status: 200,
      body: { id: user.id, username: user.username, email: row.email, roles: ['ROLE_USER'], createdAt: row.created_at.toISOString() },
    });
    expect(res.body.email).toBe(user.body.email);
  });

  it('returns 403 "No token provided!" without a token', async () => {
    expectRefused(await me(auth), 403, { code: 'auth.no_token', message: 'No token provided!' });
  });

  it('returns 401 "Unauthorized!" for a garbage, a tampered or an expired token', async () => {
    const user = await newSession();
    const [header, payload] = user.accessToken.split('.');
    const forgedPayload = Buffer.from(JSON.stringify({ ...claimsOf(user.accessToken), roles: ['admin'] })).toString('base64url');
    const tampered = [header, forgedPayload, user.accessToken.split('.')[2]].join('.');
    expect(payload).not.toBe(forgedPayload);
    for (const token of ['garbage', 'not.a.jwt', tampered]) {
      expectRefused(await me(auth, token), 401, { code: 'auth.invalid_token', message: 'Unauthorized!' });
    }
    expect((await me(auth, user.accessToken)).status).toBe(200);
    auth.clock.advance(TEST_CONFIG.accessTokenTtlSeconds + 10);
    expectRefused(await me(auth, user.accessToken), 401, { code: 'auth.invalid_token', message: 'Unauthorized!' });
  });
});

describe('disabled users', () => {
  it('refuses sign-in with 403 auth.user_disabled only with the right password', async () => {
    const user = await newSession();
    await admin.setDisabled(user.id, true, {});
    expectRefused(await signIn(auth, user.username, user.password), 403, { code: 'auth.user_disabled', message: 'User is disabled.' });
    expectRefused(await signIn(auth, user.username, 'not-the-password'), 401, {
      code: 'auth.invalid_credentials',
      message: 'Invalid username or password!',
    });
    const failures = (await eventsOf(auth, user.id)).filter((event) => event.type === 'signin.failure');
    expect(failures.map((event) => event.details.reason)).toEqual(['disabled', 'invalid_credentials']);
  });

  it('revokes the refresh tokens (403 auth.refresh_token_revoked) and the access tokens (401)', async () => {
    const user = await newSession();
    const other = await signIn(auth, user.username, user.password);
    await admin.setDisabled(user.id, true, {});
    expectRefused(await refresh(auth, user.refreshToken), 403, REFRESH_ERRORS.revoked);
    expectRefused(await refresh(auth, other.body.refreshToken), 403, REFRESH_ERRORS.revoked);
    const rows = await tokensOf(auth, user.id);
    expect(rows.map((row) => row.revoked_reason)).toEqual(['user_disabled', 'user_disabled']);
    expectRefused(await me(auth, user.accessToken), 401, { code: 'auth.invalid_token', message: 'Unauthorized!' });
  });

  it('refuses a refresh racing the disabling with a 403, never a 5xx, and leaves no live token', async () => {
    const wrong: string[] = [];
    for (let offset = -4; offset < 4; offset += 1) {
      const user = await newSession();
      const [refreshed, disabling] = await race(
        offset,
        () => refresh(auth, user.refreshToken),
        () => admin.setDisabled(user.id, true, {}).then(() => 'disabled', (err: Error) => `failed: ${err.message}`),
      );
      const live = (await tokensOf(auth, user.id)).filter(isLive).length;
      const outcome = `disabling ${offset} ms after: refresh ${refreshed.status} ${refreshed.body.code ?? ''}, admin ${disabling}, live tokens ${live}`;
      if (![200, 403].includes(refreshed.status) || disabling !== 'disabled' || live !== 0) wrong.push(outcome);
    }
    expect(wrong).toEqual([]);
  });

  it('lets the user sign in again once enabled, and keeps the old sessions ended', async () => {
    const user = await newSession();
    await admin.setDisabled(user.id, true, {});
    await admin.setDisabled(user.id, false, {});
    const again = await signIn(auth, user.username, user.password);
    expect(again.status).toBe(200);
    expect((await me(auth, again.body.accessToken)).status).toBe(200);
    expect((await refresh(auth, again.body.refreshToken)).status).toBe(200);
    expectRefused(await refresh(auth, user.refreshToken), 403, REFRESH_ERRORS.revoked);
    expect((await me(auth, user.accessToken)).status).toBe(401);
  });
});

describe('audit log (auth_events)', () => {
  it('records sign-in success and failure, refresh, signout and signout.all with ip and user agent', async () => {
    const from = { 'user-agent': 'sessions-test/2.0 (audit)', 'x-forwarded-for': '198.51.100.23' };
    const user = buildUser();
    secrets.add(user.password);
    expect((await send(auth, '/api/auth/signup', user, from)).status).toBe(201);
    expect((await signIn(auth, user.username, 'wrong-password-1', from)).status).toBe(401);
    const first = await signIn(auth, user.username, user.password, from);
    const refreshed = await refresh(auth, first.body.refreshToken, from);
    expect((await send(auth, '/api/auth/signout', { refreshToken: refreshed.body.refreshToken }, from)).status).toBe(200);
    const second = await signIn(auth, user.username, user.password, from);
    const all = await send(auth, '/api/auth/signout-all', {}, { ...from, authorization: `Bearer ${second.body.accessToken}` });
    expect(all.status).toBe(200);

    const events = await eventsOf(auth, first.body.id);
    expect(events.map((event) => event.type)).toEqual([
      'user.signup',
      'signin.failure',
      'signin.success',
      'token.refresh',
      'signout',
      'signin.success',
      'signout.all',
    ]);
    for (const event of events) expect(event).toMatchObject({ ip: '198.51.100.23', user_agent: 'sessions-test/2.0 (audit)' });
    const sid = claimsOf(first.body.accessToken).sid;
    expect(events[1]?.details).toEqual({ username: user.username, reason: 'invalid_credentials' });
    expect(events[2]?.details).toEqual({ family: sid });
    expect(events[3]?.details).toEqual({ family: sid });
    expect(events[4]?.details).toEqual({ family: sid });
  });

  it('never stores a password or a token in auth_events, nor a raw refresh token in refresh_tokens', async () => {
    // Also covers every password and token the tests above saw, when they ran first.
    const user = await newSession();
    await refresh(auth, user.refreshToken);
    await send(auth, '/api/auth/signout', { refreshToken: user.refreshToken });
    expect(secrets.size).toBeGreaterThan(3);

    for (const h of [auth, reuse]) {
      const events = JSON.stringify(await h.db.knex('auth_events').select('*'));
      const tokens = JSON.stringify(await h.db.knex('refresh_tokens').select('*'));
      expect([...secrets].filter((secret) => events.includes(secret))).toEqual([]);
      expect([...secrets].filter((secret) => tokens.includes(secret))).toEqual([]);
    }
  });
});

describe('[POST /api/auth/signin] racing a disable', () => {
  // Cost 10 makes the password check take long enough for the disable to land inside it.
  let slow: AuthHarness;
  beforeAll(async () => {
    slow = await startAuth({ config: { bcryptCost: 10 } });
  });
  afterAll(async () => {
    await slow?.close();
  });

  it.each([0, 10, 25, 40])('never leaves a live session for a user disabled %i ms into their sign-in', async (offsetMs) => {
    const user = await newSession(slow);
    const admin = createAdminService({ knex: slow.db.knex, clock: slow.clock.now });
    const [signedIn] = await race(
      offsetMs,
      () => signIn(slow, user.username, user.password),
      () => admin.setDisabled(user.id, true, {}),
    );
    // Either the sign-in lost (403 user_disabled) or it won and the disable ended its session.
    const outcome = signedIn.status === 200 ? (await refresh(slow, signedIn.body.refreshToken)).body.code : signedIn.body.code;
    expect(['auth.user_disabled', 'auth.refresh_token_revoked']).toContain(outcome);
    expect((await tokensOf(slow, user.id)).filter(isLive)).toEqual([]);
  });
});
