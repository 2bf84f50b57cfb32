/**
 * What the soak checks once the traffic has stopped: that every user whose sign-up got 201
 * can sign in, that each has the roles of the last acknowledged role change, and that no
 * sign-up the service refused (or did not answer) left a user behind.
 */
import { send, valueAt, type Recorder } from './client';
import { ROLES, type SoakUser, type TrafficResult } from './traffic';

/** Results of {@link verifyUsers}. */
export interface Verification {
  /** Users whose sign-up got 201. */
  users: number;
  /** Of those, the ones that could sign in with their password. */
  signedIn: number;
  /** Who could not, with the status they got. */
  lost: string[];
  /** Users whose roles, read back through `GET /api/auth/users/:id`, are the last acknowledged ones (of those whose id is known). */
  rolesAsExpected: number;
  /** Who has other roles, and which. */
  rolesWrong: string[];
  /** Users the admin API lists with the soak's tag (its admin included); undefined when the listing failed. */
  listedWithTag: number | undefined;
}

const roleRank = (role: string) => ROLES.findIndex((known) => known === role);

/** Role names (plain or `ROLE_X`) in the service's order; undefined when `value` is not a list of strings. */
const sortedRoles = (value: unknown): string[] | undefined =>
  Array.isArray(value) && value.every((role) => typeof role === 'string')
    ? value.map((role) => role.replace(/^ROLE_/, '').toLowerCase()).sort((a, b) => roleRank(a) - roleRank(b))
    : undefined;

/** Runs `work` over `items`, `concurrency` at a time. */
async function eachLimited<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) {
      const item = items[i];
      if (item !== undefined) await work(item);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** A 5xx or no answer: says nothing about the user, so worth asking again. */
const inconclusive = (status: number) => status === 0 || status >= 500;

/**
 * Signs in every user the traffic signed up, then reads each one's roles back with the admin's
 * token, `concurrency` at a time; the requests are recorded in `recorder` (as `signin` and
 * `roles`), apart from the traffic's.
 *
 * @remarks A sign-in that got a 5xx or no answer is tried once more, alone, after the others:
 * the 5xx counts against the soak anyway, and the second answer tells whether the user is lost.
 */
export async function verifyUsers(
  gatewayUrl: string,
  traffic: TrafficResult,
  adminToken: string,
  tag: string,
  recorder: Recorder,
  concurrency: number,
): Promise<Verification> {
  const lost: string[] = [];
  const rolesWrong: string[] = [];
  const retry: SoakUser[] = [];
  let signedIn = 0;
  let rolesAsExpected = 0;

  const checkRoles = async (user: SoakUser, id: number): Promise<void> => {
    const { username } = user.account;
    const read = await send(gatewayUrl, { method: 'GET', path: `/api/auth/users/${id}`, token: adminToken });
    recorder.record('roles', `GET /api/auth/users/:id of ${username} after the traffic`, read, [200]);
    const roles = sortedRoles(valueAt(read.body, 'roles'));
    const expected = [user.roles.join(','), ...(user.unsureRoles ? [user.unsureRoles.join(',')] : [])];
    if (roles && expected.includes(roles.join(','))) rolesAsExpected += 1;
    else {
      const found = roles?.join(',') ?? `status ${read.status}`;
      rolesWrong.push(`${username}: ${found}, last acknowledged ${user.roles.join(',')} after ${user.roleChanges} change(s)`);
    }
  };

  const check = async (user: SoakUser, lastTry: boolean): Promise<void> => {
    const { username, password } = user.account;
    const signin = await send(gatewayUrl, { method: 'POST', path: '/api/auth/signin', json: { username, password } });
    recorder.record('signin', `sign-in of ${username} after the traffic`, signin, [200]);
    const id = valueAt(signin.body, 'id');
    if (signin.status === 200 && typeof id === 'number') {
      signedIn += 1;
      if (user.id !== undefined && user.id !== id) rolesWrong.push(`${username}: id ${id}, signed in before as ${user.id}`);
      return checkRoles(user, id);
    }
    if (inconclusive(signin.status) && !lastTry) {
      retry.push(user);
      return;
    }
    lost.push(`${username}: ${signin.status}`);
    // Its roles can still be read back when a sign-in during the traffic told its id.
    if (user.id !== undefined) await checkRoles(user, user.id);
  };

  await eachLimited(traffic.users, concurrency, (user) => check(user, false));
  await eachLimited(retry, 1, (user) => check(user, true));

  const listing = await send(gatewayUrl, { method: 'GET', path: `/api/auth/users?q=${tag}&limit=1`, token: adminToken });
  recorder.record('roles', 'GET /api/auth/users?q=<tag> after the traffic', listing, [200]);
  const total = valueAt(listing.body, 'total');
  return {
    users: traffic.users.length,
    signedIn,
    lost,
    rolesAsExpected,
    rolesWrong,
    listedWithTag: typeof total === 'number' ? total : undefined,
  };
}
