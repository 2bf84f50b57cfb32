import type { Knex } from 'knex';
import { AppError, clientKey } from '@gatehouse/common';

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

  function keysOf(username: string, ip: string | undefined): ThrottleKey[] {
    const account = username.toLowerCase();
    const client = clientKey(ip);
    return [
      { key: `account-ip:${account}|${client}`, threshold: settings.maxFailures },
      { key: `ip:${client}`, threshold: settings.maxFailuresPerIp },
      { key: `account:${account}`, threshold: settings.maxFailures * 20 },
    ];
  }

  return {
    /**
     * Throws 429 when any counter of this attempt is locked; otherwise returns whether any
     * failures are on record for the account (so a success knows whether to clear them).
     */
    async check(username: string, ip: string | undefined, now: Date): Promise<{ accountHasFailures: boolean }> {
      if (!enabled) return { accountHasFailures: false };
      const keys = keysOf(username, ip);
      const rows: { key: string; locked_until: Date | null }[] = await knex('signin_throttle')
        .whereIn('key', keys.map((entry) => entry.key))
        .select('key', 'locked_until');
      const lockedUntil = Math.max(...rows.map((row) => row.locked_until?.getTime() ?? 0));
      if (lockedUntil > now.getTime()) throw tooManyAttempts(Math.ceil((lockedUntil - now.getTime()) / 1000));
      return { accountHasFailures: rows.some((row) => !row.key.startsWith('ip:')) };
    },

    /** Counts a failed attempt against each of its keys, locking those past their threshold. */
    async recordFailure(username: string, ip: string | undefined, now: Date): Promise<void> {
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
    },

    /** After a successful sign-in: the account's counters start again (the IP's do not). */
    async clearAccount(username: string, ip: string | undefined): Promise<void> {
      if (!enabled) return;
      const keys = keysOf(username, ip).filter((entry) => !entry.key.startsWith('ip:'));
      await knex('signin_throttle').whereIn('key', keys.map((entry) => entry.key)).delete();
    },

    /** Deletes counters whose window and lock have both passed; run now and then. */
    async prune(now: Date): Promise<number> {
      const windowStart = new Date(now.getTime() - settings.windowSeconds * 1000);
      return knex('signin_throttle')
        .where('window_started_at', '<=', windowStart)
        .where((where) => where.whereNull('locked_until').orWhere('locked_until', '<=', now))
        .delete();
    },
  };
}

export type SigninThrottle = ReturnType<typeof createSigninThrottle>;
