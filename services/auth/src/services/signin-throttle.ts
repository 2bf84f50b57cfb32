import type { Knex } from 'knex';
import { AppError, clientKey } from '@gatehouse/common';

/** A reserved sign-in attempt: end it with exactly one of these. */
export interface SigninAttempt {
  /** The password was wrong (or the user unknown): counts a failure, locking past the threshold. */
  failed(now: Date): Promise<void>;
  /** The password was right: clears the account's counters. */
  succeeded(): Promise<void>;
  /** Neither (a disabled user, an error): only takes the reservation back. */
  release(): Promise<void>;
}

/** What one failed sign-in counts against, and how many failures each tolerates. */
interface ThrottleKey {
  key: string;
  /** Failures within the window before the key locks. */
  threshold: number;
}

export interface SigninThrottleSettings {
  /** Failures for one account from one IP before it locks; 0 turns throttling off. */
  maxFailures: number;
  /** Failures from one IP, over all accounts, before the IP locks (everyone behind it). */
  maxFailuresPerIp: number;
  /** Failures count within this many seconds of the first one. */
  windowSeconds: number;
  /** The longest a key stays locked. */
  maxLockSeconds: number;
}

/** The settings `loadConfig` gives by default. */
export const DEFAULT_THROTTLE: SigninThrottleSettings = {
  maxFailures: 5,
  maxFailuresPerIp: 50,
  windowSeconds: 15 * 60,
  maxLockSeconds: 15 * 60,
};

/** The first lock lasts this long; each further failure doubles it, up to `maxLockSeconds`. */
const FIRST_LOCK_SECONDS = 5;

/** The 429 of a locked sign-in, with the seconds until the lock ends. */
export function tooManyAttempts(retryAfterSeconds: number): AppError {
  return new AppError(429, 'auth.too_many_attempts', 'Too many failed sign-in attempts. Try again later.', {
    headers: { 'Retry-After': String(retryAfterSeconds) },
  });
}

/**
 * Brute-force protection for sign-in, kept in PostgreSQL (`signin_throttle`) so every auth
 * instance sees the same counts. Three counters per attempt:
 * - account + IP: `maxFailures` (5) — what a guessing client meets first;
 * - IP alone: `maxFailuresPerIp` (50) — one client trying many accounts; raise it for many
 *   users behind one address (an office NAT);
 * - account alone: 20 × `maxFailures` (100) — many clients (a botnet) trying one account.
 *
 * @remarks A key that reaches its threshold locks for 5 s, doubling with each further failure
 * up to `maxLockSeconds`; while any key of an attempt is locked, sign-in answers 429 with
 * `Retry-After` before looking at the password (no oracle, no bcrypt cost). Counts expire
 * `windowSeconds` after their first failure, and a successful sign-in clears the account's
 * counters, so no one can lock a real user out for longer than one lock: from the user's own
 * IP, only the account-wide counter (100 failures from elsewhere) can hold them back.
 * Unknown usernames are counted exactly like known ones, so the 429 says nothing about
 * which accounts exist.
 */
export function createSigninThrottle(knex: Knex, settings: SigninThrottleSettings) {
  const enabled = settings.maxFailures > 0;

  /**
   * An attempt's keys in the one order every statement here locks them: by key, as the "C"
   * collation sorts. Two statements that lock the same rows in different orders deadlock, and
   * PostgreSQL then kills one of them. The prefixes fix the order whatever the name or address.
   */
  function keysOf(username: string, ip: string | undefined): ThrottleKey[] {
    const account = username.toLowerCase();
    const client = clientKey(ip);
    return [
      { key: `account-ip:${account}|${client}`, threshold: settings.maxFailures },
      { key: `account:${account}`, threshold: settings.maxFailures * 20 },
      { key: `ip:${client}`, threshold: settings.maxFailuresPerIp },
    ];
  }

  /**
   * The keys of the counters `where` picks, locked in key order: an update or delete of several
   * counters takes its rows through this, since a plain `WHERE key IN (…)` locks them in
   * whatever order the scan meets them. (An insert locks them in the order of its rows, which
   * `keysOf` gives.)
   */
  function lockedInOrder(where: (query: Knex.QueryBuilder) => Knex.QueryBuilder) {
    return where(knex('signin_throttle').select('key')).orderByRaw('key COLLATE "C"').forUpdate();
  }

  /** The counters of `keys`, locked in key order. */
  const lockedKeys = (keys: ThrottleKey[]) =>
    lockedInOrder((query) =>
      query.whereIn(
        'key',
        keys.map((entry) => entry.key),
      ),
    );

  /** Counts a failed attempt against each of its keys, locking those past their threshold. */
  async function recordFailure(username: string, ip: string | undefined, now: Date): Promise<void> {
    if (!enabled) return;
    const keys = keysOf(username, ip);
    const windowStart = new Date(now.getTime() - settings.windowSeconds * 1000);
    const counted: { key: string; failures: number }[] = await knex('signin_throttle')
      .insert(keys.map((entry) => ({ key: entry.key, failures: 1, window_started_at: now })))
      .onConflict('key')
      .merge({
        failures: knex.raw('CASE WHEN signin_throttle.window_started_at <= ? THEN 1 ELSE signin_throttle.failures + 1 END', [windowStart]),
        window_started_at: knex.raw('CASE WHEN signin_throttle.window_started_at <= ? THEN ? ELSE signin_throttle.window_started_at END', [
          windowStart,
          now,
        ]),
      })
      .returning(['key', 'failures']);
    for (const { key, failures } of counted) {
      const threshold = keys.find((entry) => entry.key === key)?.threshold ?? settings.maxFailures;
      if (failures < threshold) continue;
      const lockSeconds = Math.min(FIRST_LOCK_SECONDS * 2 ** Math.min(failures - threshold, 20), settings.maxLockSeconds);
      await knex('signin_throttle').where({ key }).update({ locked_until: new Date(now.getTime() + lockSeconds * 1000) });
    }
  }

  /** Takes this attempt's reservation back off every key (it ended, or never went ahead). */
  async function release(keys: ThrottleKey[]): Promise<void> {
    await knex('signin_throttle')
      .whereIn('key', lockedKeys(keys))
      .update({ pending: knex.raw('greatest(pending - 1, 0)') });
  }

  return {
    /**
     * Reserves a sign-in attempt before the password is checked: counts it as pending on each
     * key, in one statement, and throws 429 when a key is locked or when its failures plus the
     * attempts in flight would pass its threshold (past it, one attempt at a time). So a burst
     * of concurrent guesses gets no further than the threshold, not one guess per connection. End the attempt with exactly
     * one of the returned `failed`, `succeeded` or `release`.
     */
    async reserve(username: string, ip: string | undefined, now: Date): Promise<SigninAttempt> {
      if (!enabled) return { failed: async () => {}, succeeded: async () => {}, release: async () => {} };
      const keys = keysOf(username, ip);
      const windowStart = new Date(now.getTime() - settings.windowSeconds * 1000);
      const expired = knex.raw('signin_throttle.window_started_at <= ?', [windowStart]);
      const rows: { key: string; failures: number; pending: number; locked_until: Date | null }[] = await knex('signin_throttle')
        .insert(keys.map((entry) => ({ key: entry.key, failures: 0, pending: 1, window_started_at: now })))
        .onConflict('key')
        .merge({
          failures: knex.raw('CASE WHEN ? THEN 0 ELSE signin_throttle.failures END', [expired]),
          pending: knex.raw('signin_throttle.pending + 1'),
          window_started_at: knex.raw('CASE WHEN ? THEN ? ELSE signin_throttle.window_started_at END', [expired, now]),
        })
        .returning(['key', 'failures', 'pending', 'locked_until']);

      const lockedUntil = Math.max(...rows.map((row) => row.locked_until?.getTime() ?? 0));
      // In flight at once: what is left below the threshold, and one at a time past it (each
      // failure there locks again, for twice as long).
      const crowded = rows.some((row) => {
        const threshold = keys.find((entry) => entry.key === row.key)?.threshold ?? 0;
        return row.pending > Math.max(1, threshold - row.failures);
      });
      if (lockedUntil > now.getTime() || crowded) {
        await release(keys);
        throw tooManyAttempts(Math.max(1, Math.ceil((lockedUntil - now.getTime()) / 1000)));
      }
      const accountKeys = keys.filter((entry) => !entry.key.startsWith('ip:'));
      return {
        // Counted before released: for a moment the attempt weighs twice, never zero times.
        failed: async (at) => {
          await recordFailure(username, ip, at);
          await release(keys);
        },
        succeeded: async () => {
          await release(keys);
          // The account's counters start again (the IP's do not).
          await knex('signin_throttle').whereIn('key', lockedKeys(accountKeys)).delete();
        },
        release: () => release(keys),
      };
    },

    recordFailure,

    /** Deletes counters whose window and lock have both passed; run now and then. */
    async prune(now: Date): Promise<number> {
      const windowStart = new Date(now.getTime() - settings.windowSeconds * 1000);
      // Locked in key order like every other statement here, and skipping the rows a sign-in
      // holds: they are in use, so not stale. The deleted keys rather than knex's count, which
      // the embedded database's driver does not give.
      const stale = lockedInOrder((query) =>
        query
          .where('window_started_at', '<=', windowStart)
          .where((where) => where.whereNull('locked_until').orWhere('locked_until', '<=', now)),
      ).skipLocked();
      const deleted: { key: string }[] = await knex('signin_throttle').whereIn('key', stale).delete().returning('key');
      return deleted.length;
    },
  };
}

export type SigninThrottle = ReturnType<typeof createSigninThrottle>;
