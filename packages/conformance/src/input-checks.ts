import type { Check, CheckContext, TestUser } from './context';
import { describeResponse, isRecord, type HttpResponse } from './http';

// Hostile sign-up bodies. Each must get the expected 4xx with a JSON `{message, code}` body —
// never a 5xx, never a stack trace — and the service must still answer afterwards.

const SIGNUP = '/api/auth/signup';
const BODY_LIMIT_BYTES = 16 * 1024;
const BCRYPT_MAX_BYTES = 72;
// A line of a V8 stack trace: "    at fn (/path/file.js:12:34)" or "    at /path/file.js:12:34".
const STACK_TRACE_LINE = /^\s*at .+:\d+:\d+\)?\s*$/m;

/** A body that starts with `prefix` members and goes on with the user's valid fields. */
function rawBodyWith(prefix: string, user: TestUser): string {
  return `{${prefix},${JSON.stringify(user).slice(1)}`;
}

/** 'a' followed by 36 two-byte characters: 73 bytes in UTF-8, one over bcrypt's limit. */
function passwordOverBcryptLimit(): string {
  const password = `a${'é'.repeat(BCRYPT_MAX_BYTES / 2)}`;
  if (Buffer.byteLength(password, 'utf8') !== BCRYPT_MAX_BYTES + 1) throw new Error('internal: the long password has the wrong length');
  return password;
}

/** Insists on `status` with a `{message, code}` JSON body, and on the service still serving. */
async function expectClientError(ctx: CheckContext, res: HttpResponse, status: number, field?: string): Promise<void> {
  if (res.status >= 500) throw new Error(`server error: ${describeResponse(res)}`);
  if (STACK_TRACE_LINE.test(res.text)) throw new Error(`the body carries a stack trace: ${describeResponse(res)}`);
  if (res.status !== status) throw new Error(`expected ${status}, got ${describeResponse(res)}`);
  const body = res.json;
  if (!isRecord(body) || typeof body.message !== 'string' || typeof body.code !== 'string') {
    throw new Error(`expected a JSON body with message and code, got ${describeResponse(res)}`);
  }
  if (field && !JSON.stringify(body.details ?? null).includes(field)) {
    throw new Error(`expected details naming ${field}, got ${describeResponse(res)}`);
  }
  const after = await ctx.request('GET', '/api/test/all');
  if (after.status !== 200) throw new Error(`GET /api/test/all afterwards: expected 200, got ${describeResponse(after)}`);
}

/** A check that sends one bad sign-up request, built around a fresh user's valid fields. */
function badSignUp(
  name: string,
  status: number,
  send: (ctx: CheckContext, user: TestUser) => Promise<HttpResponse>,
  field?: string,
): Check {
  return {
    group: 'bad-input',
    name,
    async run(ctx) {
      await expectClientError(ctx, await send(ctx, ctx.newUser()), status, field);
    },
  };
}

/** The checks of the bad-input group. */
export const inputChecks: readonly Check[] = [
  badSignUp('malformed JSON gets 400', 400, (ctx, user) =>
    ctx.request('POST', SIGNUP, { body: `{"username":${JSON.stringify(user.username)},"password":` }),
  ),
  badSignUp('a 17 KiB JSON body gets 413', 413, (ctx, user) =>
    ctx.request('POST', SIGNUP, { json: { ...user, padding: 'x'.repeat(BODY_LIMIT_BYTES + 1024) } }),
  ),
  badSignUp('a text/plain body gets 415', 415, (ctx, user) =>
    ctx.request('POST', SIGNUP, { body: JSON.stringify(user), contentType: 'text/plain' }),
  ),
  badSignUp('a form-urlencoded body gets 415', 415, (ctx, user) =>
    ctx.request('POST', SIGNUP, { body: new URLSearchParams({ ...user }).toString(), contentType: 'application/x-www-form-urlencoded' }),
  ),
  badSignUp('__proto__ in the body gets 400', 400, (ctx, user) =>
    // Raw text: JSON.stringify cannot write a "__proto__" member, it would set the prototype.
    ctx.request('POST', SIGNUP, { body: rawBodyWith('"__proto__":{"roles":["admin"]}', user) }),
  ),
  badSignUp('constructor.prototype in the body gets 400', 400, (ctx, user) =>
    ctx.request('POST', SIGNUP, { body: rawBodyWith('"constructor":{"prototype":{"isAdmin":true}}', user) }),
  ),
  badSignUp('username as an array gets 400', 400, (ctx, user) =>
    ctx.request('POST', SIGNUP, { json: { ...user, username: [user.username] } }),
  ),
  badSignUp('password as a number gets 400', 400, (ctx, user) =>
    ctx.request('POST', SIGNUP, { json: { ...user, password: 12345678901234 } }),
  ),
  badSignUp(
    `a password of ${BCRYPT_MAX_BYTES + 1} bytes gets 400 naming password`,
    400,
    (ctx, user) => ctx.request('POST', SIGNUP, { json: { ...user, password: passwordOverBcryptLimit() } }),
    'password',
  ),
  badSignUp('an unknown field gets 400', 400, (ctx, user) => ctx.request('POST', SIGNUP, { json: { ...user, isAdmin: true } })),
  badSignUp(
    'a very common password gets 400 naming password',
    400,
    (ctx, user) => ctx.request('POST', SIGNUP, { json: { ...user, password: 'password123' } }),
    'password',
  ),
];
