/**
 * The soak's traffic: `concurrency` clients, each owning its own users and acting on one of
 * them at a time, so the soak knows what every answer should be. Across clients everything runs
 * at once (sign-ups, sign-ins, refreshes, role changes through the one admin, reads).
 *
 * The model each answer is checked against:
 * - a sign-up of a new name is 201; a sign-in with the right password 200, with the user's
 *   roles as the last acknowledged role change set them, in the body and in the token;
 * - a wrong password is 401: a client never lets a user of its own reach the sign-in throttle's
 *   5 failures, so 429 is expected only from the lockout probe, which sends 6 wrong passwords
 *   for a name nobody has (unknown names are throttled like real ones): five 401s, then 429;
 * - a refresh of the session's current token is 200; presenting the token it replaced is reuse,
 *   403, which ends the session (its current token is then 403 too) and revokes the user's
 *   access tokens;
 * - a role change (`PUT /api/auth/users/:id/roles` with the admin's token) is 200 and revokes
 *   the user's access tokens: auth's `/me` refuses the old token at once (401); content may
 *   accept it until its revocation poll has seen the change, but not later than
 *   {@link REVOCATION_GRACE_MS} after the change was acknowledged;
 * - `/api/test/user` is 200 for any current token, `/mod` and `/admin` 200 with the role and
 *   403 without; every bad input is the 4xx its case names.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { newAccount, refreshTokenIn, type Account } from '../bench/accounts';
import { KINDS, send, valueAt, type Answer, type Call, type Kind, type Recorder } from './client';

/** The roles of the service, in the order its admin API returns them. */
export const ROLES = ['user', 'moderator', 'admin'] as const;
type Role = (typeof ROLES)[number];

/** Longest time after an acknowledged revocation that content may still accept the token. */
export const REVOCATION_GRACE_MS = 10_000;
/** Failures in a row a client allows one of its users (the throttle locks at the 5th). */
const MAX_WRONG_IN_A_ROW = 4;
/** The lockout probe: this many wrong passwords get 401 (`SIGNIN_MAX_FAILURES`), the next 429. */
export const THROTTLE_FAILURES = 5;
/** An access token older than this is refreshed before use (the services' TTL is 15 min). */
const ACCESS_TOKEN_MAX_AGE_MS = 10 * 60_000;

/**
 * How often each kind is picked, relative to the others. Reads dominate, as they would in
 * use; each sign-up, sign-in and wrong password costs a bcrypt hash or comparison.
 */
const WEIGHTS: Record<Kind, number> = {
  signup: 2,
  signin: 2,
  'signin-wrong': 2,
  lockout: 1,
  refresh: 8,
  'refresh-reuse': 1,
  roles: 3,
  'read-user': 12,
  'read-mod': 6,
  'read-admin': 6,
  me: 6,
  'bad-input': 6,
};

const SIGNIN = '/api/auth/signin';
const SIGNUP = '/api/auth/signup';
const REFRESH = '/api/auth/refreshtoken';
const post = (path: string, json: unknown): Call => ({ method: 'POST', path, json });
const postRaw = (path: string, raw: string, contentType?: string): Call => ({ method: 'POST', path, raw, contentType });
const get = (path: string, token?: string): Call => ({ method: 'GET', path, token });
const putRoles = (user: SoakUser, roles: unknown, token?: string): Call => ({
  method: 'PUT',
  path: `/api/auth/users/${user.id ?? 1}/roles`,
  json: { roles },
  token,
});

interface Session {
  accessToken: string;
  /** When the access token was issued (performance.now()). */
  issuedAt: number;
  /** The roles in the access token. */
  tokenRoles: Role[];
  /** The token to refresh with; undefined once reuse detection ended the session. */
  refreshToken: string | undefined;
  /** The refresh token the last rotation retired, to present again as reuse. */
  retired: string | undefined;
  /** When an acknowledged change revoked the access token (performance.now()); undefined while it is current. */
  revokedAt: number | undefined;
}

/** One user a client signed up (201). */
export interface SoakUser {
  account: Account;
  /** Known from the first sign-in on. */
  id: number | undefined;
  /** The roles the last acknowledged role change set (`user` after sign-up). */
  roles: Role[];
  /** Set when a role change got no answer or a 504: either the old or these roles may hold. */
  unsureRoles: Role[] | undefined;
  session: Session | undefined;
  wrongInARow: number;
  roleChanges: number;
}

/** What the traffic needs to know. */
export interface TrafficSettings {
  gatewayUrl: string;
  concurrency: number;
  durationMs: number;
  /** Unique to this soak, part of every username. */
  tag: string;
  admin: Account;
  recorder: Recorder;
  signal: AbortSignal;
}

/** What the traffic leaves for the checks. */
export interface TrafficResult {
  users: SoakUser[];
  /** Sign-ups that got no answer or a 504 from the gateway: they may or may not exist. */
  unsureSignups: number;
  elapsedMs: number;
  roleChanges: number;
  /**
   * Reads with a revoked token that content still accepted, and the longest time after the
   * revocation (as acknowledged to the soak) such a read was sent.
   */
  lateAccepted: { reads: number; maxMs: number };
  /** Reads with a revoked token. */
  revokedReads: number;
}

const sameRoles = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((role, i) => role === b[i]);
const isRole = (value: unknown): value is Role => ROLES.some((role) => role === value);
/** Roles in the service's order, as the admin API and tokens list them. */
const inOrder = (roles: readonly Role[]): Role[] => ROLES.filter((role) => roles.includes(role));
/** `ROLE_MODERATOR` → `moderator`, as sign-in and `/me` spell roles. */
const fromAuthority = (value: unknown): unknown => (typeof value === 'string' ? value.replace(/^ROLE_/, '').toLowerCase() : value);

/** The roles listed at `key` of `body` (spelt either way), or undefined when it is not a list of roles. */
function rolesAt(body: unknown, key: string): Role[] | undefined {
  const value = valueAt(body, key);
  if (!Array.isArray(value)) return undefined;
  const roles = value.map(fromAuthority);
  return roles.every(isRole) ? roles : undefined;
}

/** The roles claimed by an access token (read, not verified: the services verify it). */
function tokenRoles(token: string): Role[] | undefined {
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    return rolesAt(JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')), 'roles');
  } catch {
    return undefined;
  }
}

const stringAt = (body: unknown, key: string): string | undefined => {
  const value = valueAt(body, key);
  return typeof value === 'string' ? value : undefined;
};

/**
 * Smooth weighted round robin over {@link WEIGHTS}, after a first round that visits every kind
 * once (starting at a different kind for each client).
 */
class Schedule {
  private readonly current = new Map<Kind, number>();
  private readonly total = KINDS.reduce((sum, kind) => sum + WEIGHTS[kind], 0);
  private tour: Kind[];

  constructor(offset: number) {
    const start = offset % KINDS.length;
    this.tour = [...KINDS.slice(start), ...KINDS.slice(0, start)];
  }

  /** True until the first round is over. */
  get touring(): boolean {
    return this.tour.length > 0;
  }

  next(): Kind {
    const toured = this.tour.shift();
    if (toured) return toured;
    let best: Kind = KINDS[0];
    for (const kind of KINDS) {
      const value = (this.current.get(kind) ?? 0) + WEIGHTS[kind];
      this.current.set(kind, value);
      if (value > (this.current.get(best) ?? 0)) best = kind;
    }
    this.current.set(best, (this.current.get(best) ?? 0) - this.total);
    return best;
  }
}

/** The admin's session, refreshed when its access token gets old; shared by all clients. */
class AdminSession {
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly call: (kind: Kind, what: string, request: Call, expected: number[]) => Promise<Answer>,
    private accessToken: string,
    private refreshToken: string,
    private issuedAt = performance.now(),
  ) {}

  /** The admin's access token, refreshed first when it is old. */
  async token(): Promise<string> {
    if (performance.now() - this.issuedAt > ACCESS_TOKEN_MAX_AGE_MS) {
      this.refreshing ??= this.refresh().finally(() => (this.refreshing = undefined));
      await this.refreshing;
    }
    return this.accessToken;
  }

  private async refresh(): Promise<void> {
    const answer = await this.call('refresh', "refresh of the admin's session", post(REFRESH, { refreshToken: this.refreshToken }), [200]);
    const accessToken = stringAt(answer.body, 'accessToken');
    const refreshToken = refreshTokenIn(answer.body);
    if (answer.status !== 200 || !accessToken || !refreshToken) return; // recorded; the old token serves a while longer
    Object.assign(this, { accessToken, refreshToken, issuedAt: performance.now() });
  }
}

/** Signs the admin in; throws unless that works (nothing else could). */
export async function signInAdmin(gatewayUrl: string, admin: Account): Promise<{ accessToken: string; refreshToken: string }> {
  const answer = await send(gatewayUrl, post(SIGNIN, { username: admin.username, password: admin.password }));
  const accessToken = stringAt(answer.body, 'accessToken');
  const refreshToken = refreshTokenIn(answer.body);
  if (answer.status !== 200 || !accessToken || !refreshToken) {
    throw new Error(`the admin's sign-in answered ${answer.status}: ${JSON.stringify(answer.body)}`);
  }
  return { accessToken, refreshToken };
}

/**
 * Runs the traffic until `durationMs` has passed (or `signal` aborts); resolves once every
 * client has had its last answer.
 */
export async function runTraffic(settings: TrafficSettings): Promise<TrafficResult> {
  const { gatewayUrl, recorder, tag } = settings;
  const call = async (kind: Kind, what: string, request: Call, expected: number[]): Promise<Answer> => {
    const answer = await send(gatewayUrl, request);
    recorder.record(kind, what, answer, expected);
    return answer;
  };
  const adminTokens = await signInAdmin(gatewayUrl, settings.admin);
  const admin = new AdminSession(call, adminTokens.accessToken, adminTokens.refreshToken);
  const users: SoakUser[] = [];
  const totals = { unsureSignups: 0, roleChanges: 0, revokedReads: 0, lateReads: 0, lateMaxMs: 0 };
  const started = performance.now();
  const deadline = started + settings.durationMs;

  async function client(index: number): Promise<void> {
    const mine: SoakUser[] = [];
    const schedule = new Schedule(index);
    let counter = 0;
    const nextName = (letter: string) => `${letter}${index}n${(counter += 1)}`;
    let badInput = index;

    const signUp = async (): Promise<void> => {
      const account = newAccount(nextName('u'), tag);
      const answer = await call('signup', 'sign-up of a new user', post(SIGNUP, account), [201]);
      // No answer, or the gateway's 504 (auth did not answer in time): the user may exist.
      if (answer.status === 0 || answer.status === 504) totals.unsureSignups += 1;
      if (answer.status !== 201) return;
      const user: SoakUser = {
        account,
        id: undefined,
        roles: ['user'],
        unsureRoles: undefined,
        session: undefined,
        wrongInARow: 0,
        roleChanges: 0,
      };
      mine.push(user);
      users.push(user);
    };

    /** Starts a session whose token must carry `user.roles`. */
    const signIn = async (user: SoakUser): Promise<void> => {
      const { username, password } = user.account;
      const answer = await call('signin', 'sign-in with the right password', post(SIGNIN, { username, password }), [200]);
      if (answer.status !== 200) return;
      user.wrongInARow = 0;
      const id = valueAt(answer.body, 'id');
      const accessToken = stringAt(answer.body, 'accessToken');
      const refreshToken = refreshTokenIn(answer.body);
      if (typeof id !== 'number' || !accessToken || !refreshToken) {
        const what = 'sign-in answer without id or tokens';
        recorder.surprise({ kind: 'signin', what, status: 200, expected: [200], answer: JSON.stringify(answer.body) });
        return;
      }
      user.id = id;
      checkRoles(user, 'signin', 'roles in the sign-in answer', rolesAt(answer.body, 'roles'));
      const roles = tokenRoles(accessToken);
      checkRoles(user, 'signin', 'roles in the access token of a sign-in', roles);
      const issuedAt = performance.now();
      user.session = { accessToken, issuedAt, tokenRoles: roles ?? [], refreshToken, retired: undefined, revokedAt: undefined };
    };

    /** Notes a surprise unless `roles` are the user's (either possible set, after a role change without an answer). */
    const checkRoles = (user: SoakUser, kind: Kind, what: string, roles: Role[] | undefined): void => {
      if (roles && (sameRoles(roles, user.roles) || (user.unsureRoles && sameRoles(roles, user.unsureRoles)))) return;
      const answer = `roles ${JSON.stringify(roles)}, expected ${JSON.stringify(user.roles)}`;
      recorder.surprise({ kind, what, status: 200, expected: [200], answer });
    };

    /** Rotates the user's session: a new access token with the user's roles, and a new refresh token. */
    const refresh = async (user: SoakUser): Promise<void> => {
      const session = user.session;
      if (!session?.refreshToken) return;
      const answer = await call('refresh', 'refresh with the current token', post(REFRESH, { refreshToken: session.refreshToken }), [200]);
      const accessToken = stringAt(answer.body, 'accessToken');
      const refreshToken = refreshTokenIn(answer.body);
      if (answer.status !== 200 || !accessToken || !refreshToken) return;
      const roles = tokenRoles(accessToken);
      checkRoles(user, 'refresh', 'roles in the access token of a refresh', roles);
      Object.assign(session, {
        accessToken,
        issuedAt: performance.now(),
        tokenRoles: roles ?? [],
        retired: session.refreshToken,
        refreshToken,
        revokedAt: undefined,
      });
    };

    /** The user's session, started or refreshed first when it cannot serve. */
    const sessionOf = async (user: SoakUser): Promise<Session | undefined> => {
      if (!user.session?.refreshToken) await signIn(user);
      if (user.session && performance.now() - user.session.issuedAt > ACCESS_TOKEN_MAX_AGE_MS) await refresh(user);
      return user.session;
    };

    const read = async (kind: 'read-user' | 'read-mod' | 'read-admin' | 'me', user: SoakUser): Promise<void> => {
      const session = await sessionOf(user);
      if (!session) return;
      const path = { 'read-user': '/api/test/user', 'read-mod': '/api/test/mod', 'read-admin': '/api/test/admin', me: '/api/auth/me' }[kind];
      const needs = { 'read-user': undefined, 'read-mod': 'moderator', 'read-admin': 'admin', me: undefined }[kind];
      const allowed = needs === undefined || session.tokenRoles.some((role) => role === needs) ? 200 : 403;
      const revokedFor = session.revokedAt === undefined ? undefined : performance.now() - session.revokedAt;
      // auth checks the token's version against the database: a revocation holds at once there.
      const expected =
        revokedFor === undefined ? [allowed] : kind !== 'me' && revokedFor < REVOCATION_GRACE_MS ? [allowed, 401] : [401];
      const what = revokedFor === undefined ? `GET ${path}` : `GET ${path} with a token revoked ${Math.round(revokedFor)} ms before`;
      const answer = await call(kind, what, get(path, session.accessToken), expected);
      if (revokedFor !== undefined) {
        totals.revokedReads += 1;
        if (answer.status === allowed) {
          totals.lateReads += 1;
          totals.lateMaxMs = Math.max(totals.lateMaxMs, revokedFor);
        }
      }
      if (kind === 'me' && answer.status === 200) checkRoles(user, 'me', 'roles in /me', rolesAt(answer.body, 'roles'));
    };

    const act = async (kind: Kind): Promise<void> => {
      if (kind === 'signup' || mine.length === 0) return signUp();
      if (kind === 'lockout') return lockout(nextName('x'));
      const user = mine[randomInt(mine.length)];
      if (!user) return;
      switch (kind) {
        case 'signin':
          return signIn(user);
        case 'signin-wrong': {
          if (user.wrongInARow >= MAX_WRONG_IN_A_ROW) return signIn(user);
          user.wrongInARow += 1;
          const wrong = { username: user.account.username, password: `${user.account.password}-wrong` };
          await call('signin-wrong', 'sign-in with a wrong password', post(SIGNIN, wrong), [401]);
          return;
        }
        case 'refresh':
          if (await sessionOf(user)) await refresh(user);
          return;
        case 'refresh-reuse':
          return reuse(user);
        case 'roles':
          return changeRoles(user);
        case 'read-user':
        case 'read-mod':
        case 'read-admin':
        case 'me':
          return read(kind, user);
        case 'bad-input':
          return sendBadInput(BAD_INPUTS[(badInput += 1) % BAD_INPUTS.length], user);
      }
    };

    const lockout = async (username: string): Promise<void> => {
      const password = 'not-the-password-of-anyone';
      for (let attempt = 1; attempt <= THROTTLE_FAILURES + 1; attempt += 1) {
        const expected = attempt <= THROTTLE_FAILURES ? 401 : 429;
        const what = `wrong password ${attempt} for an unknown name`;
        const answer = await call('lockout', what, post(SIGNIN, { username, password }), [expected]);
        if (answer.status !== expected) return;
      }
    };

    /** Presents the token the last refresh retired: 403 reuse, and the session's current token is refused after it. */
    const reuse = async (user: SoakUser): Promise<void> => {
      if (!(await sessionOf(user))?.retired) await refresh(user);
      const session = user.session;
      if (!session?.retired || !session.refreshToken) return;
      const reused = await call('refresh-reuse', 'refresh with a token already rotated', post(REFRESH, { refreshToken: session.retired }), [403]);
      if (reused.status !== 403) return;
      const code = stringAt(reused.body, 'code');
      if (code !== 'auth.refresh_token_reused') {
        recorder.surprise({ kind: 'refresh-reuse', what: 'code of a reuse', status: 403, expected: [403], answer: String(code) });
      }
      // The family has ended and the user's access tokens are revoked.
      session.revokedAt ??= performance.now();
      const ended = post(REFRESH, { refreshToken: session.refreshToken });
      await call('refresh-reuse', 'refresh with the current token of a family ended by reuse', ended, [403]);
      session.refreshToken = undefined;
      session.retired = undefined;
    };

    const changeRoles = async (user: SoakUser): Promise<void> => {
      if (user.id === undefined) await signIn(user);
      if (user.id === undefined) return;
      const current = user.unsureRoles ?? user.roles;
      let roles: Role[];
      do {
        roles = inOrder(ROLES.filter(() => randomInt(2) === 1));
      } while (roles.length === 0 || sameRoles(roles, current));
      const token = await admin.token();
      const answer = await call('roles', 'role change by the admin', putRoles(user, roles, token), [200]);
      if (answer.status === 0 || answer.status === 504) {
        // It may have committed or not: the checks accept either roles from now on, and the
        // session, maybe revoked, maybe not, is dropped.
        user.unsureRoles = roles;
        user.session = undefined;
        return;
      }
      if (answer.status !== 200) return;
      totals.roleChanges += 1;
      user.roleChanges += 1;
      user.roles = roles;
      user.unsureRoles = undefined;
      if (user.session) user.session.revokedAt ??= performance.now();
      const answered = rolesAt(valueAt(answer.body, 'user'), 'roles');
      if (!answered || !sameRoles(answered, roles)) {
        const what = 'roles in the answer of a role change';
        recorder.surprise({ kind: 'roles', what, status: 200, expected: [200], answer: JSON.stringify(answer.body) });
      }
    };

    const sendBadInput = async (badCase: BadInput | undefined, user: SoakUser): Promise<void> => {
      if (!badCase) return;
      const request = badCase.request({ user, adminToken: await admin.token() });
      await call('bad-input', badCase.name, request, [badCase.status]);
    };

    // A user to act on from the first round on, which is finished even past the deadline, so
    // that a short soak on a busy machine still sends every kind.
    await signUp();
    while ((performance.now() < deadline || schedule.touring) && !settings.signal.aborted) {
      await act(schedule.next());
    }
  }

  await Promise.all(Array.from({ length: settings.concurrency }, (_, index) => client(index)));
  return {
    users,
    unsureSignups: totals.unsureSignups,
    elapsedMs: performance.now() - started,
    roleChanges: totals.roleChanges,
    lateAccepted: { reads: totals.lateReads, maxMs: Math.round(totals.lateMaxMs) },
    revokedReads: totals.revokedReads,
  };
}

/** One kind of bad input and the status it must get. */
interface BadInput {
  name: string;
  status: number;
  request(context: { user: SoakUser; adminToken: string }): Call;
}

/** A token of the right shape that nobody signed: `alg: none`, or a real one with its signature altered. */
function forgedToken(real: string | undefined, how: 'none' | 'tampered'): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const [header = '', payload = '', signature = ''] = (real ?? `${encode({ alg: 'RS256' })}.${encode({ sub: '1' })}.c2ln`).split('.');
  if (how === 'none') return `${encode({ alg: 'none', typ: 'JWT' })}.${payload}.`;
  const flipped = signature.startsWith('A') ? `B${signature.slice(1)}` : `A${signature.slice(1)}`;
  return `${header}.${payload}.${flipped}`;
}

/** Bad inputs: each must be refused with its 4xx, whatever else is going on. */
const BAD_INPUTS: readonly BadInput[] = [
  { name: 'sign-in with malformed JSON', status: 400, request: () => postRaw(SIGNIN, '{"username": "a", "password":') },
  { name: 'sign-in with wrong types', status: 400, request: () => post(SIGNIN, { username: 42, password: ['x'] }) },
  {
    name: 'sign-up with wrong types and a bad email',
    status: 400,
    request: () => post(SIGNUP, { username: 'ab', email: 'not-an-email', password: 12345678 }),
  },
  {
    name: 'sign-up with a 20 KiB body',
    status: 413,
    request: () => post(SIGNUP, { username: 'big', email: 'big@example.test', password: 'x'.repeat(20 * 1024) }),
  },
  { name: 'sign-in as text/plain', status: 415, request: () => postRaw(SIGNIN, 'username=a&password=b', 'text/plain') },
  { name: 'sign-in with a JSON array', status: 400, request: () => postRaw(SIGNIN, '[]') },
  {
    name: 'sign-in with a __proto__ key',
    status: 400,
    request: () => postRaw(SIGNIN, '{"__proto__": {"admin": true}, "username": "a", "password": "b"}'),
  },
  { name: 'sign-in with a NUL in the username', status: 400, request: () => post(SIGNIN, { username: 'a\u0000b', password: 'x' }) },
  {
    name: 'sign-in with an unknown field',
    status: 400,
    request: ({ user }) => post(SIGNIN, { username: user.account.username, password: user.account.password, admin: true }),
  },
  {
    name: 'sign-up of a taken username',
    status: 400,
    request: ({ user }) => post(SIGNUP, { ...user.account, email: `again.${user.account.email}` }),
  },
  { name: 'read with a token that is not a JWT', status: 401, request: () => get('/api/test/user', 'not-a-token') },
  { name: 'read with an alg:none token', status: 401, request: ({ user }) => get('/api/test/user', forgedToken(user.session?.accessToken, 'none')) },
  { name: 'read with an altered signature', status: 401, request: ({ user }) => get('/api/test/mod', forgedToken(user.session?.accessToken, 'tampered')) },
  { name: '/me with an altered signature', status: 401, request: ({ user }) => get('/api/auth/me', forgedToken(user.session?.accessToken, 'tampered')) },
  { name: 'read without a token', status: 403, request: () => get('/api/test/admin') },
  { name: 'refresh with a malformed token', status: 400, request: () => post(REFRESH, { refreshToken: 'nope' }) },
  { name: 'refresh with a token nobody issued', status: 403, request: () => post(REFRESH, { refreshToken: randomBytes(32).toString('base64url') }) },
  { name: 'role change without a token', status: 403, request: ({ user }) => putRoles(user, ['admin']) },
  { name: 'role change to an unknown role', status: 400, request: ({ user, adminToken }) => putRoles(user, ['root'], adminToken) },
  { name: 'role change to no roles', status: 400, request: ({ user, adminToken }) => putRoles(user, [], adminToken) },
  { name: 'user id that is not a number', status: 400, request: ({ adminToken }) => get('/api/auth/users/abc', adminToken) },
  { name: 'user id that does not exist', status: 404, request: ({ adminToken }) => get('/api/auth/users/2147483647', adminToken) },
];
