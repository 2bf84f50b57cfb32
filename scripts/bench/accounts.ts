/**
 * The benchmark's users, made through the public API the way a client would: a plain user, a
 * moderator (promoted by the first admin through `PUT /api/auth/users/:id/roles`), and their
 * sign-ins.
 */
import { randomBytes } from 'node:crypto';

/** What sign-up takes. */
export interface Account {
  username: string;
  email: string;
  password: string;
}

/** The parts of a sign-in response the benchmark uses. */
export interface Session {
  userId: number;
  accessToken: string;
  refreshToken: string;
}

/**
 * A new account whose username starts with `prefix`, unique for `tag` (one tag per benchmark),
 * with a password sign-up accepts (long, not guessable from the username).
 */
export function newAccount(prefix: string, tag: string): Account {
  const username = `${prefix}_${tag}`;
  return {
    username,
    email: `${username}@bench.example.test`,
    password: `${randomBytes(9).toString('base64url')}-Correct-Horse`,
  };
}

/** A random tag for the usernames of one benchmark. */
export function newTag(): string {
  return randomBytes(4).toString('hex');
}

async function send(url: string, method: 'POST' | 'PUT', body: unknown, accessToken?: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...(accessToken ? { authorization: `Bearer ${accessToken}` } : {}) },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
  });
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}

/** `body[key]`, when `body` is an object that has that key. */
function valueAt(body: unknown, key: string): unknown {
  return typeof body === 'object' && body !== null && key in body ? Reflect.get(body, key) : undefined;
}

function stringAt(body: unknown, key: string): string | undefined {
  const value = valueAt(body, key);
  return typeof value === 'string' ? value : undefined;
}

function numberAt(body: unknown, key: string): number | undefined {
  const value = valueAt(body, key);
  return typeof value === 'number' ? value : undefined;
}

/** The new refresh token in a response body of sign-in or refresh, if there is one. */
export function refreshTokenIn(body: unknown): string | undefined {
  return stringAt(body, 'refreshToken');
}

/** `POST /api/auth/signup` through the gateway; throws unless 201. */
export async function signUp(gatewayUrl: string, account: Account): Promise<void> {
  const res = await send(`${gatewayUrl}/api/auth/signup`, 'POST', account);
  if (res.status !== 201) throw new Error(`sign-up of ${account.username} answered ${res.status}: ${JSON.stringify(res.body)}`);
}

/** `POST /api/auth/signin` through the gateway; throws unless 200. */
export async function signIn(gatewayUrl: string, account: Pick<Account, 'username' | 'password'>): Promise<Session> {
  const res = await send(`${gatewayUrl}/api/auth/signin`, 'POST', { username: account.username, password: account.password });
  const userId = numberAt(res.body, 'id');
  const accessToken = stringAt(res.body, 'accessToken');
  const refreshToken = refreshTokenIn(res.body);
  if (res.status !== 200 || userId === undefined || !accessToken || !refreshToken) {
    throw new Error(`sign-in of ${account.username} answered ${res.status}: ${JSON.stringify(res.body)}`);
  }
  return { userId, accessToken, refreshToken };
}

/** `PUT /api/auth/users/:id/roles` with an admin's token; throws unless 200. */
export async function setRoles(gatewayUrl: string, adminToken: string, userId: number, roles: string[]): Promise<void> {
  const res = await send(`${gatewayUrl}/api/auth/users/${userId}/roles`, 'PUT', { roles }, adminToken);
  if (res.status !== 200) throw new Error(`setting the roles of user ${userId} answered ${res.status}: ${JSON.stringify(res.body)}`);
}

/** The accounts the workloads sign in with. */
export interface BenchAccounts {
  user: Account;
  moderator: Account;
  /** Users whose sessions the refresh workloads rotate. */
  refreshUsers: Account[];
}

/**
 * Signs up a user, a future moderator and `refreshUsers` more users, and makes the second a
 * moderator with the admin's token. The moderator's roles hold from its next sign-in on.
 *
 * @remarks The refresh workloads spread their sessions over several users because a refresh
 * holds its user's row lock for its whole transaction: sessions of one user refresh one at a
 * time, which would measure that lock rather than the service.
 */
export async function createBenchAccounts(gatewayUrl: string, admin: Account, tag: string, refreshUsers: number): Promise<BenchAccounts> {
  const user = newAccount('bench_user', tag);
  const moderator = newAccount('bench_mod', tag);
  const others = Array.from({ length: refreshUsers }, (_, i) => newAccount(`bench_r${i + 1}`, tag));
  const accounts = [user, moderator, ...others];
  // A few at a time: each costs a bcrypt hash.
  for (let i = 0; i < accounts.length; i += 4) {
    await Promise.all(accounts.slice(i, i + 4).map((account) => signUp(gatewayUrl, account)));
  }
  const adminSession = await signIn(gatewayUrl, admin);
  const { userId } = await signIn(gatewayUrl, moderator);
  await setRoles(gatewayUrl, adminSession.accessToken, userId, ['user', 'moderator']);
  return { user, moderator, refreshUsers: others };
}
