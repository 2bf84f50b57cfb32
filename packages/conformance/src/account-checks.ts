import { isDeepStrictEqual } from 'node:util';
import type { Check, CheckContext, TestUser } from './context';
import { codeOf, describeResponse, isRecord, retryAfterSeconds, type HttpResponse } from './http';

// Sign-in must not tell which usernames exist (by answer or by time), must lock a username
// after a few failures without becoming a password oracle, and sign-up must not grant roles.

const TIMING_TRIES = 7;
const TIMING_MIN_RATIO = 0.5;
const TIMING_MAX_RATIO = 2;
// The lockout allows 5 failures; staying well under it keeps the timing check clear of it.
const MAX_FAILURES_PER_USER = 3;
const FAILURES_BEFORE_LOCK = 5;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const low = sorted[middle - 1] ?? 0;
  const high = sorted[middle] ?? 0;
  return sorted.length % 2 === 0 ? (low + high) / 2 : high;
}

/** The body without its `requestId`, which differs on every answer by design. */
function withoutRequestId(res: HttpResponse): unknown {
  if (!isRecord(res.json)) return res.text;
  const { requestId: _requestId, ...rest } = res.json;
  return rest;
}

/** A wrong password for `user`: its own with a suffix, so it is as long and as plausible. */
const wrongPassword = (user: TestUser) => ({ username: user.username, password: `${user.password}-wrong` });

function expectStatus(res: HttpResponse, status: number, label: string): void {
  if (res.status !== status) throw new Error(`${label}: expected ${status}, got ${describeResponse(res)}`);
}

/** Fails a fresh user's sign-in `FAILURES_BEFORE_LOCK` times, insisting on 401 each time. */
async function failUntilLocked(ctx: CheckContext, user: TestUser): Promise<void> {
  for (let attempt = 1; attempt <= FAILURES_BEFORE_LOCK; attempt++) {
    expectStatus(await ctx.signIn(wrongPassword(user)), 401, `failed sign-in ${attempt} of ${FAILURES_BEFORE_LOCK}`);
  }
}

/** Insists on 429 `auth.too_many_attempts` with `Retry-After` in whole seconds ≥ 1. */
function expectLocked(res: HttpResponse, label: string): void {
  if (res.status !== 429) throw new Error(`${label}: expected 429, got ${describeResponse(res)}`);
  const code = codeOf(res);
  if (code !== 'auth.too_many_attempts') throw new Error(`${label}: expected code auth.too_many_attempts, got ${describeResponse(res)}`);
  const retryAfter = retryAfterSeconds(res);
  if (retryAfter === undefined || retryAfter < 1) {
    throw new Error(`${label}: expected Retry-After in whole seconds ≥ 1, got ${JSON.stringify(res.headers.get('retry-after'))}`);
  }
}

/** The checks of the enumeration, brute-force and privilege groups. */
export const accountChecks: readonly Check[] = [
  {
    group: 'enumeration',
    name: 'unknown user and wrong password get the same answer',
    async run(ctx) {
      const known = await ctx.signUp();
      const unknown = await ctx.signIn(ctx.newUser());
      const wrong = await ctx.signIn(wrongPassword(known));
      expectStatus(unknown, 401, 'unknown user');
      expectStatus(wrong, 401, 'wrong password');
      if (!isDeepStrictEqual(withoutRequestId(unknown), withoutRequestId(wrong))) {
        throw new Error(`the bodies differ: unknown user ${describeResponse(unknown)}; wrong password ${describeResponse(wrong)}`);
      }
    },
  },
  {
    group: 'enumeration',
    name: 'unknown user and wrong password take the same time',
    async run(ctx) {
      // One warm-up try of each kind, then the measured ones, interleaved so that a slow
      // moment of the server weighs on both. The wrong passwords go to several fresh users so
      // none of them gets near the lockout.
      const tries = TIMING_TRIES + 1;
      const known: TestUser[] = [];
      for (let i = 0; i < Math.ceil(tries / MAX_FAILURES_PER_USER); i++) known.push(await ctx.signUp());
      const unknownMs: number[] = [];
      const wrongMs: number[] = [];
      for (let i = 0; i < tries; i++) {
        const user = known[Math.floor(i / MAX_FAILURES_PER_USER)];
        if (!user) throw new Error('internal: not enough users for the timing tries');
        const unknown = await ctx.signIn(ctx.newUser(), { retryRateLimited: false });
        const wrong = await ctx.signIn(wrongPassword(user), { retryRateLimited: false });
        expectStatus(unknown, 401, `unknown user, try ${i}`);
        expectStatus(wrong, 401, `wrong password, try ${i}`);
        if (i === 0) continue;
        unknownMs.push(unknown.elapsedMs);
        wrongMs.push(wrong.elapsedMs);
      }
      const unknownMedian = median(unknownMs);
      const wrongMedian = median(wrongMs);
      // The median of each pair's ratio: the two tries of a pair run back to back, so a busy
      // moment of a shared machine slows both and cancels out, where it can tilt the medians.
      const ratio = median(unknownMs.map((ms, i) => ms / (wrongMs[i] ?? Number.NaN)));
      const measured = `ratio ${ratio.toFixed(2)} (median of the pairs' ratios; median unknown user ${unknownMedian.toFixed(1)} ms, wrong password ${wrongMedian.toFixed(1)} ms, ${TIMING_TRIES} tries each)`;
      if (!(ratio >= TIMING_MIN_RATIO && ratio <= TIMING_MAX_RATIO)) {
        throw new Error(`${measured}, outside ${TIMING_MIN_RATIO}–${TIMING_MAX_RATIO}: response time tells which usernames exist`);
      }
      return measured;
    },
  },
  {
    group: 'brute-force',
    name: `${FAILURES_BEFORE_LOCK} failed sign-ins lock the user with 429 and Retry-After`,
    async run(ctx) {
      const user = await ctx.signUp();
      await failUntilLocked(ctx, user);
      expectLocked(await ctx.signIn(wrongPassword(user)), `failed sign-in ${FAILURES_BEFORE_LOCK + 1}`);
      expectLocked(await ctx.signIn(wrongPassword(user)), `failed sign-in ${FAILURES_BEFORE_LOCK + 2}`);
    },
  },
  {
    group: 'brute-force',
    name: 'a locked user is refused even with the right password',
    async run(ctx) {
      const user = await ctx.signUp();
      await failUntilLocked(ctx, user);
      expectLocked(await ctx.signIn(user), 'the right password while locked');
    },
  },
  {
    group: 'privilege',
    name: 'sign-up asking for admin and moderator gets only the user role',
    async run(ctx) {
      const user = ctx.newUser();
      const signUp = await ctx.request('POST', '/api/auth/signup', { json: { ...user, roles: ['admin', 'moderator'] } });
      expectStatus(signUp, 201, 'sign-up with roles admin, moderator');
      const signIn = await ctx.signIn(user);
      expectStatus(signIn, 200, 'sign-in');
      const body = isRecord(signIn.json) ? signIn.json : {};
      if (!isDeepStrictEqual(body.roles, ['ROLE_USER'])) throw new Error(`sign-in roles: expected ["ROLE_USER"], got ${JSON.stringify(body.roles)}`);
      if (typeof body.accessToken !== 'string') throw new Error(`sign-in gave no access token: ${describeResponse(signIn)}`);
      for (const board of ['/api/test/mod', '/api/test/admin']) {
        const res = await ctx.request('GET', board, { headers: { 'x-access-token': body.accessToken } });
        expectStatus(res, 403, board);
      }
    },
  },
];
