import type { Check, CheckContext } from './context';
import { randomHex } from './context';
import { codeOf, describeResponse, retryAfterSeconds, type HttpResponse } from './http';

// Response headers the gateway owes every answer — its own, proxied ones and errors alike —
// and the gateway's rate limit on the auth routes.

const REQUIRED_HEADERS: [name: string, value: string][] = [
  ['X-Content-Type-Options', 'nosniff'],
  ['X-Frame-Options', 'DENY'],
  ['Referrer-Policy', 'no-referrer'],
];
const FOREIGN_ORIGIN = 'https://evil.example';
const RATE_LIMIT_BATCH = 10;
// The gateway's default limit is 300 a minute, in fixed windows: a window may begin while the
// check runs, so it sends up to twice that and a batch more for each window, and one window
// is sure to overflow. It stops at the first 429 gateway.rate_limited. (Exactly 300 failed
// whenever the earlier checks' requests had fallen into the window before.)
const GATEWAY_DEFAULT_LIMIT = 300;
const RATE_LIMIT_MAX_REQUESTS = 2 * (GATEWAY_DEFAULT_LIMIT + RATE_LIMIT_BATCH);

/** Every problem with the security headers of `res`, or none. */
function headerProblems(res: HttpResponse): string[] {
  const problems: string[] = [];
  for (const [name, expected] of REQUIRED_HEADERS) {
    const actual = res.headers.get(name);
    if (actual?.trim().toLowerCase() !== expected.toLowerCase()) problems.push(`${name}: expected ${expected}, got ${actual ?? 'none'}`);
  }
  if (!res.headers.get('Content-Security-Policy')?.trim()) problems.push('no Content-Security-Policy');
  const poweredBy = res.headers.get('X-Powered-By');
  if (poweredBy !== null) problems.push(`X-Powered-By: ${poweredBy} is sent`);
  return problems;
}

/** A check that one kind of answer carries the security headers. */
function securityHeadersCheck(name: string, status: number, send: (ctx: CheckContext) => Promise<HttpResponse>): Check {
  return {
    group: 'headers',
    name,
    async run(ctx) {
      const res = await send(ctx);
      if (res.status !== status) throw new Error(`expected ${status}, got ${describeResponse(res)}`);
      const problems = headerProblems(res);
      if (problems.length > 0) throw new Error(problems.join('; '));
    },
  };
}

/** The checks of the headers group. */
export const headerChecks: readonly Check[] = [
  securityHeadersCheck('a 200 carries the security headers', 200, (ctx) => ctx.request('GET', '/api/test/all')),
  securityHeadersCheck('a 404 carries the security headers', 404, (ctx) => ctx.request('GET', `/conformance-missing-${randomHex(4)}`)),
  securityHeadersCheck('a proxied error carries the security headers', 403, (ctx) => ctx.request('GET', '/api/test/user')),
  {
    group: 'headers',
    name: 'a foreign origin gets no CORS permission',
    async run(ctx) {
      const simple = await ctx.request('GET', '/api/test/all', { headers: { origin: FOREIGN_ORIGIN } });
      const preflight = await ctx.request('OPTIONS', '/api/auth/signin', {
        headers: { origin: FOREIGN_ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });
      for (const [label, res] of [['GET', simple], ['preflight', preflight]] as const) {
        const allowed = res.headers.get('Access-Control-Allow-Origin');
        if (allowed !== null) throw new Error(`${label} from ${FOREIGN_ORIGIN}: Access-Control-Allow-Origin: ${allowed}`);
      }
    },
  },
];

/** The opt-in check of the rate-limit group: it leaves the caller's address blocked for a while. */
export const rateLimitChecks: readonly Check[] = [
  {
    group: 'rate-limit',
    name: 'many quick sign-ins from one client get 429 gateway.rate_limited',
    optIn: 'rate-limit',
    async run(ctx) {
      const statuses = new Map<number, number>();
      for (let sent = 0; sent < RATE_LIMIT_MAX_REQUESTS; sent += RATE_LIMIT_BATCH) {
        const batch = await Promise.all(
          Array.from({ length: RATE_LIMIT_BATCH }, () => ctx.signIn(ctx.newUser(), { retryRateLimited: false })),
        );
        for (const res of batch) statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        const limited = batch.find((res) => res.status === 429 && codeOf(res) === 'gateway.rate_limited');
        if (!limited) continue;
        const retryAfter = retryAfterSeconds(limited);
        if (retryAfter === undefined || retryAfter < 1) {
          throw new Error(`429 without Retry-After in whole seconds ≥ 1 (got ${JSON.stringify(limited.headers.get('retry-after'))})`);
        }
        return `limited after at most ${sent + RATE_LIMIT_BATCH} requests, Retry-After ${retryAfter} s`;
      }
      const seen = [...statuses].map(([status, count]) => `${count}×${status}`).join(', ');
      throw new Error(`no 429 gateway.rate_limited after ${RATE_LIMIT_MAX_REQUESTS} sign-ins (answers: ${seen})`);
    },
  },
];
