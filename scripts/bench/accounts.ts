/**
 * The benchmark's users, made through the public API with the typed client, the way an
 * application would: a plain user, a moderator (promoted by the first admin through
 * `PUT /api/auth/users/:id/roles`), and their sign-ins.
 */
import { randomBytes } from 'node:crypto';
import { createClient } from '@gatehouse/client';

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

/** `body[key]`, when `body` is an object that has that key. */
function valueAt(body: unknown, key: string): unknown {
  return typeof body === 'object' && body !== null && key in body ? Reflect.get(body, key) : undefined;
}

function stringAt(body: unknown, key: string): string | undefined {
  const value = valueAt(body, key);
  return typeof value === 'string' ? value : undefined;
}

/** The new refresh token in a response body of sign-in or refresh, if there is one. */
export function refreshTokenIn(body: unknown): string | undefined {
  return stringAt(body, 'refreshToken');
}

/** `POST /api/auth/signin` through the gateway with a fresh client; throws a GatehouseError unless 200. */
export async function signIn(gatewayUrl: string, account: Pick<Account, 'username' | 'password'>): Promise<Session> {
  const { id, accessToken, refreshToken } = await createClient({ baseUrl: gatewayUrl }).signIn({
    username: account.username,
    password: account.password,
  });
  return { userId: id, accessToken, refreshToken };
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
  const client = createClient({ baseUrl: gatewayUrl });
  // A few at a time: each costs a bcrypt hash.
  for (let i = 0; i < accounts.length; i += 4) {
    await Promise.all(accounts.slice(i, i + 4).map((account) => client.signUp(account)));
  }
  const { userId } = await signIn(gatewayUrl, moderator);
  await client.signIn({ username: admin.username, password: admin.password });
  await client.setRoles(userId, ['user', 'moderator']);
  return { user, moderator, refreshUsers: others };
}
