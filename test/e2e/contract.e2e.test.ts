import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import { buildUser, createTestDatabase, type Json, type TestDatabase, type UserInput } from '@gatehouse/testing';
// Relative imports: the workspace root does not depend on these packages, and the route modules
// are read for the routes they register, not run.
import {
  buildOpenApiDocument,
  ROLE_NAMES,
  type OpenApiDocument,
  type OperationObject,
  type ResponseObject,
} from '../../packages/api/src';
import { ROLES } from '../../packages/tokens/src';
import { authRoutes } from '../../services/auth/src/routes/auth/auth.routes';
import { revocationRoutes } from '../../services/auth/src/routes/internal/revocations.routes';
import { jwksRoutes } from '../../services/auth/src/routes/jwks/jwks.routes';
import { userRoutes } from '../../services/auth/src/routes/users/users.routes';
import { testRoutes } from '../../services/content/src/routes/test/test.routes';
import { startStack, type RunningStack } from './stack';

// The contract test: the whole stack, driven through the gateway, with every response checked
// against the OpenAPI document — status documented for the operation, body valid against the
// documented schema (ajv, JSON Schema 2020-12), documented headers present. Every status an
// operation documents must be produced here or waived below with a reason, and every route the
// services register under /api must be documented, so the test fails when either side drifts.

// Set to true once gateway/src/app.ts mounts apiDocs(): the gateway must then serve the
// document, and it must be the one built here.
const GATEWAY_SERVES_DOCUMENT = true;

// Shared responses no healthy stack can produce on demand; other suites produce them.
const WAIVED_SHARED_RESPONSES: Record<string, string> = {
  InternalError: 'a 500 is a bug: nothing in a healthy stack answers one',
  ServiceUnavailable: 'needs the database down: services/auth/test/database-down.int.test.ts',
  BadGateway: 'needs a service down: gateway/test/gateway.int.test.ts',
  GatewayTimeout: 'needs a service that hangs: gateway/test/gateway.int.test.ts',
};
// The same, for statuses of single operations (`operationId status`).
const WAIVED_STATUSES: Record<string, string> = {
  'readiness 503': 'needs a service down: gateway/test/gateway.int.test.ts',
  'signUp 503': 'needs the database down or the bcrypt pool full: services/auth/test/bcrypt-pool.test.ts',
  'signIn 503': 'needs the database down or the bcrypt pool full: services/auth/test/database-down.int.test.ts',
};

const AUTH_RATE_LIMIT = 400;
const document: OpenApiDocument = buildOpenApiDocument();
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-contract-'));
const admin = buildUser();
const alice = buildUser();
const moderator = buildUser();
const victim = buildUser();
let database: TestDatabase | undefined;
let stack: RunningStack | undefined;

beforeAll(async () => {
  // On the PostgreSQL server for the tests when there is one, else on the embedded database.
  if (process.env.TEST_DATABASE_URL) database = await createTestDatabase();
  stack = await startStack({
    ...(database ? { DATABASE_URL: database.databaseUrl } : { DATA_DIR: dataDir, DATABASE_URL: '' }),
    LOG_LEVEL: 'warn',
    BCRYPT_COST: '4',
    ADMIN_USERNAME: admin.username,
    ADMIN_EMAIL: admin.email,
    ADMIN_PASSWORD: admin.password,
    AUTH_RATE_LIMIT: String(AUTH_RATE_LIMIT),
    SIGNIN_MAX_FAILURES: '3',
    SIGNIN_MAX_FAILURES_PER_IP: '1000',
  });
  // Longer than startStack's own 120 s, so that it fails first, with the launcher's output.
}, 150_000);

afterAll(async () => {
  if (stack) await stack.interrupt();
  stack?.kill();
  await database?.drop();
  fs.rmSync(dataDir, { recursive: true, force: true });
}, 60_000);

// ---- the document, compiled ----

const ajv = new Ajv2020({ strict: true, allErrors: true, formats: { email: true, 'date-time': true } });
// zod writes a `pattern` beside each `format` it emits, and that pattern is what checks them.
// The document's own fields are no JSON Schema keywords; its schemas are reached by pointer.
for (const field of Object.keys(document)) ajv.addKeyword(field);
ajv.addSchema(document, 'openapi.json');
const validators = new Map<string, ValidateFunction>();

function validatorAt(pointer: string): ValidateFunction {
  let validate = validators.get(pointer);
  if (!validate) {
    validate = ajv.compile({ $ref: `openapi.json#${pointer}` });
    validators.set(pointer, validate);
  }
  return validate;
}

/** One segment of a JSON pointer (RFC 6901). */
const escapePointer = (part: string) => part.replaceAll('~', '~0').replaceAll('/', '~1');

interface DocumentedOperation {
  method: string;
  template: string;
  pattern: RegExp;
  operation: OperationObject;
}

const operations: DocumentedOperation[] = Object.entries(document.paths).flatMap(([template, item]) =>
  Object.entries(item).map(([method, operation]) => ({
    method,
    template,
    pattern: new RegExp(`^${template.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/\\\{[^}]+\\\}/g, '[^/]+')}$`),
    operation,
  })),
);

/** The documented answer of `operation` for `status`, where it sits in the document, and its shared name. */
function documentedResponse(
  { template, method, operation }: DocumentedOperation,
  status: number,
): { pointer: string; response: ResponseObject; shared?: string } | undefined {
  const entry = operation.responses[String(status)];
  if (!entry) return undefined;
  if (!('$ref' in entry)) {
    return { pointer: `/paths/${escapePointer(template)}/${method}/responses/${status}`, response: entry };
  }
  const shared = entry.$ref.replace('#/components/responses/', '');
  const response = document.components.responses[shared];
  if (!response) throw new Error(`${entry.$ref} is not in the document`);
  return { pointer: `/components/responses/${shared}`, response, shared };
}

// ---- calls, each checked against the document ----

/** `operationId status` of every answer seen, and the shared responses seen. */
const seen = new Set<string>();
const seenShared = new Set<string>();

interface Exchange {
  status: number;
  headers: Headers;
  text: string;
  body: Json;
}

interface CallOptions {
  /** Sent as JSON. */
  body?: unknown;
  /** Sent as is, with `contentType`. */
  raw?: string;
  contentType?: string;
  /** Sent as `x-access-token`. */
  token?: string;
  /** Sent as `Authorization: Bearer`. */
  bearer?: string;
}

async function send(method: string, urlPath: string, options: CallOptions = {}): Promise<Exchange> {
  if (!stack) throw new Error('stack not started');
  const headers: Record<string, string> = {};
  if (options.body !== undefined || options.raw !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  if (options.token) headers['x-access-token'] = options.token;
  if (options.bearer) headers.authorization = `Bearer ${options.bearer}`;
  const res = await fetch(`${stack.gatewayUrl}${urlPath}`, {
    method,
    headers,
    body: options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body)),
  });
  const text = await res.text();
  let body: Json = text;
  if ((res.headers.get('content-type') ?? '').startsWith('application/json')) body = JSON.parse(text);
  return { status: res.status, headers: res.headers, text, body };
}

/** Makes a request and holds its answer to the document; fails on anything undocumented. */
async function call(method: string, urlPath: string, options: CallOptions = {}): Promise<Exchange> {
  const exchange = await send(method, urlPath, options);
  conform(method, urlPath, exchange);
  return exchange;
}

function conform(method: string, urlPath: string, exchange: Exchange): void {
  const where = `${method} ${urlPath} answered ${exchange.status} ${exchange.text.slice(0, 300)}`;
  const pathname = new URL(urlPath, 'http://gateway').pathname;
  const documented = operations.find((candidate) => candidate.method === method.toLowerCase() && candidate.pattern.test(pathname));
  if (!documented) throw new Error(`${where}: no operation documents ${method} ${pathname}`);
  const answer = documentedResponse(documented, exchange.status);
  if (!answer) throw new Error(`${where}: ${documented.operation.operationId} does not document ${exchange.status}`);

  const mediaType = (exchange.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
  const content = answer.response.content ?? {};
  if (!(mediaType in content)) throw new Error(`${where}: ${mediaType || 'no body'} where the document has ${Object.keys(content).join(', ')}`);
  const validate = validatorAt(`${answer.pointer}/content/${escapePointer(mediaType)}/schema`);
  if (!validate(exchange.body)) throw new Error(`${where}: body does not match the document: ${JSON.stringify(validate.errors)}`);

  for (const [name, header] of Object.entries(answer.response.headers ?? {})) {
    const value = exchange.headers.get(name);
    if (value === null) {
      if (header.required) throw new Error(`${where}: no ${name} header`);
      continue;
    }
    const validateHeader = validatorAt(`${answer.pointer}/headers/${escapePointer(name)}/schema`);
    if (!validateHeader(value)) throw new Error(`${where}: ${name}: ${value} does not match the document`);
  }

  seen.add(`${documented.operation.operationId} ${exchange.status}`);
  if (answer.shared) seenShared.add(answer.shared);
}

/** For answers no operation documents (unknown paths, other methods): still the error body. */
function expectErrorBody(exchange: Exchange, status: number, code: string): void {
  expect({ status: exchange.status, code: exchange.body.code }).toEqual({ status, code });
  const validate = validatorAt('/components/schemas/Error');
  expect(validate(exchange.body) ? null : validate.errors).toBeNull();
}

// ---- the flows ----

async function signIn(user: UserInput): Promise<Json> {
  const res = await call('POST', '/api/auth/signin', { body: { username: user.username, password: user.password } });
  expect(res.status).toBe(200);
  return res.body;
}

const BAD_TOKEN = 'not-a-token';
const UNKNOWN_REFRESH_TOKEN = 'A'.repeat(43);

describe('the API against its OpenAPI document, through the gateway', () => {
  it('documents every route the services register under /api, and nothing they do not', () => {
    // The route modules, registered on a recorder: the routes as the code has them.
    type RouterArgument = Parameters<typeof authRoutes>[0];
    const registered: string[] = [];
    const recorder = new Proxy(
      {},
      {
        get: (_target, method) => (routePath: string) => {
          registered.push(`${String(method)} ${routePath.replace(/:(\w+)/g, '{$1}')}`);
        },
      },
    );
    // Cast: the recorder implements only the methods route modules call at registration.
    const router = recorder as RouterArgument;
    // Dependencies are used inside handlers only, which nothing calls here.
    const unused = <T extends object>() => new Proxy({}, { get: () => { throw new Error('used at registration'); } }) as T;
    const authenticate: Parameters<typeof authRoutes>[1]['authenticate'] = (_ctx, next) => next();
    authRoutes(router, { auth: unused(), authenticate });
    userRoutes(router, { admin: unused(), authenticate });
    jwksRoutes(router, { keys: unused() });
    revocationRoutes(router, { users: unused(), windowSeconds: 60, clock: () => new Date() });
    testRoutes(router, { authenticate });

    const served = registered.filter((route) => route.split(' ')[1]?.startsWith('/api/')).sort();
    const documented = operations
      .filter(({ template }) => template.startsWith('/api/'))
      .map(({ method, template }) => `${method} ${template}`)
      .sort();
    expect(documented).toEqual(served);
    // What the services serve outside /api is for the services behind the gateway.
    expect(registered.filter((route) => !route.split(' ')[1]?.startsWith('/api/')).sort()).toEqual([
      'get /.well-known/jwks.json',
      'get /internal/revocations',
    ]);
  });

  it('documents the roles the tokens carry', () => {
    expect([...ROLE_NAMES]).toEqual([...ROLES]);
  });

  it('[GET /api/openapi.json] is the document this test holds the API to, once the gateway serves it', async () => {
    const res = await send('GET', '/api/openapi.json');
    if (!GATEWAY_SERVES_DOCUMENT && res.status === 404) return;
    expect(res.status).toBe(200);
    expect(res.body).toEqual(JSON.parse(JSON.stringify(document)));
  });

  it("[GET /, /healthz, /readyz] the gateway's own routes", async () => {
    expect((await call('GET', '/')).status).toBe(200);
    expect((await call('GET', '/healthz')).status).toBe(200);
    expect((await call('GET', '/readyz')).status).toBe(200);
  });

  it('[every JSON body] answers 415 for another type, 413 over 16 KiB and 400 for malformed JSON', async () => {
    const withBody = operations.filter(({ operation }) => operation.requestBody);
    expect(withBody.length).toBeGreaterThan(0);
    for (const { method, template } of withBody) {
      const urlPath = template.replace(/\{[^}]+\}/g, '1');
      const verb = method.toUpperCase();
      expect((await call(verb, urlPath, { raw: 'a=b', contentType: 'text/plain' })).status).toBe(415);
      expect((await call(verb, urlPath, { raw: JSON.stringify({ pad: 'x'.repeat(17 * 1024) }) })).status).toBe(413);
      const malformed = await call(verb, urlPath, { raw: '{"username":' });
      expect({ status: malformed.status, code: malformed.body.code }).toEqual({ status: 400, code: 'request.invalid_json' });
    }
  });

  it('[POST /api/auth/signup] registers, and refuses taken names, unknown roles and bad input', async () => {
    for (const user of [alice, moderator, victim]) expect((await call('POST', '/api/auth/signup', { body: user })).status).toBe(201);
    const refusals: [unknown, string][] = [
      [buildUser({ username: alice.username.toUpperCase() }), 'user.username_taken'],
      [buildUser({ email: alice.email }), 'user.email_taken'],
      [{ ...buildUser(), roles: ['user', 'superuser'] }, 'user.unknown_role'],
      [buildUser({ password: 'short' }), 'request.invalid_input'],
      [buildUser({ password: 'password123' }), 'request.invalid_input'],
      [{ ...buildUser(), isAdmin: true }, 'request.invalid_input'],
    ];
    for (const [body, code] of refusals) {
      const res = await call('POST', '/api/auth/signup', { body });
      expect({ status: res.status, code: res.body.code }).toEqual({ status: 400, code });
    }
  });

  it('[POST /api/auth/signin] signs in, and refuses wrong passwords, bad input and, after failures, further attempts', async () => {
    const session = await signIn(alice);
    expect(session).toMatchObject({ username: alice.username, roles: ['ROLE_USER'], tokenType: 'Bearer' });
    expect((await call('POST', '/api/auth/signin', { body: { username: alice.username } })).status).toBe(400);

    const target = buildUser();
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 6 && !statuses.includes(429); attempt += 1) {
      statuses.push((await call('POST', '/api/auth/signin', { body: { username: target.username, password: 'wrong-password' } })).status);
    }
    expect(statuses.at(-1)).toBe(429);
    expect(statuses.slice(0, -1).every((status) => status === 401)).toBe(true);
  });

  it('[POST /api/auth/refreshtoken] rotates, and refuses reused, unknown and malformed tokens', async () => {
    const { refreshToken } = await signIn(alice);
    const rotated = await call('POST', '/api/auth/refreshtoken', { body: { refreshToken } });
    expect(rotated.status).toBe(200);
    const reused = await call('POST', '/api/auth/refreshtoken', { body: { refreshToken } });
    expect({ status: reused.status, code: reused.body.code }).toEqual({ status: 403, code: 'auth.refresh_token_reused' });
    // Reuse ended the session: its latest token is revoked with it.
    const revoked = await call('POST', '/api/auth/refreshtoken', { body: { refreshToken: rotated.body.refreshToken } });
    expect({ status: revoked.status, code: revoked.body.code }).toEqual({ status: 403, code: 'auth.refresh_token_revoked' });
    const unknown = await call('POST', '/api/auth/refreshtoken', { body: { refreshToken: UNKNOWN_REFRESH_TOKEN } });
    expect({ status: unknown.status, code: unknown.body.code }).toEqual({ status: 403, code: 'auth.refresh_token_unknown' });
    expect((await call('POST', '/api/auth/refreshtoken', { body: { refreshToken: 'short' } })).status).toBe(400);
  });

  it('[POST /api/auth/signout] ends a session by refresh token or by access token, and refuses neither or a bad token', async () => {
    const byRefresh = await signIn(alice);
    expect((await call('POST', '/api/auth/signout', { body: { refreshToken: byRefresh.refreshToken } })).status).toBe(200);
    const byAccess = await signIn(alice);
    expect((await call('POST', '/api/auth/signout', { bearer: byAccess.accessToken })).status).toBe(200);
    expect((await call('POST', '/api/auth/signout', { body: {} })).status).toBe(403);
    expect((await call('POST', '/api/auth/signout', { token: BAD_TOKEN })).status).toBe(401);
    expect((await call('POST', '/api/auth/signout', { body: { refreshToken: 'short' } })).status).toBe(400);
  });

  it('[POST /api/auth/signout-all] ends every session, and refuses no token or a bad one', async () => {
    const { accessToken } = await signIn(alice);
    expect((await call('POST', '/api/auth/signout-all', { token: accessToken })).status).toBe(200);
    expect((await call('POST', '/api/auth/signout-all')).status).toBe(403);
    expect((await call('POST', '/api/auth/signout-all', { token: BAD_TOKEN })).status).toBe(401);
  });

  it('[GET /api/auth/me] answers the profile for either header, and refuses no token or a bad one', async () => {
    const { accessToken } = await signIn(alice);
    const me = await call('GET', '/api/auth/me', { token: accessToken });
    expect(me.body).toMatchObject({ username: alice.username, email: alice.email });
    expect((await call('GET', '/api/auth/me', { bearer: accessToken })).status).toBe(200);
    expect((await call('GET', '/api/auth/me')).status).toBe(403);
    expect((await call('GET', '/api/auth/me', { bearer: BAD_TOKEN })).status).toBe(401);
  });

  it('[the admin API] answers admins, and refuses everyone else, bad input and unknown users', async () => {
    const { accessToken: adminToken, id: adminId } = await signIn(admin);
    const { accessToken: userToken } = await signIn(alice);
    const adminOnly: [string, string, unknown?][] = [
      ['GET', '/api/auth/users'],
      ['GET', `/api/auth/users/${adminId}`],
      ['PUT', `/api/auth/users/${adminId}/roles`, { roles: ['user', 'admin'] }],
      ['POST', `/api/auth/users/${adminId}/disable`],
      ['POST', `/api/auth/users/${adminId}/enable`],
      ['GET', '/api/auth/events'],
    ];
    for (const [method, urlPath, body] of adminOnly) {
      expect((await call(method, urlPath, { body })).status).toBe(403);
      expect((await call(method, urlPath, { body, token: BAD_TOKEN })).status).toBe(401);
      const notAdmin = await call(method, urlPath, { body, token: userToken });
      expect({ status: notAdmin.status, code: notAdmin.body.code }).toEqual({ status: 403, code: 'auth.missing_role' });
    }

    const page = await call('GET', `/api/auth/users?q=${encodeURIComponent(alice.username)}&limit=5`, { token: adminToken });
    expect(page.body).toMatchObject({ total: 1, limit: 5, offset: 0, users: [{ username: alice.username }] });
    const aliceId: number = page.body.users[0].id;
    expect((await call('GET', '/api/auth/users?limit=0', { token: adminToken })).status).toBe(400);
    expect((await call('GET', '/api/auth/users?sort=name', { token: adminToken })).status).toBe(400);

    expect((await call('GET', `/api/auth/users/${aliceId}`, { token: adminToken })).body).toMatchObject({ roles: ['user'] });
    expect((await call('GET', '/api/auth/users/999999999', { token: adminToken })).status).toBe(404);
    expect((await call('GET', '/api/auth/users/abc', { token: adminToken })).status).toBe(400);

    const moderatorId: number = (await signIn(moderator)).id;
    const roles = (id: number | string, body: unknown) => call('PUT', `/api/auth/users/${id}/roles`, { body, token: adminToken });
    expect((await roles(moderatorId, { roles: ['user', 'moderator'] })).body.user).toMatchObject({ roles: ['user', 'moderator'] });
    const unknownRole = await roles(moderatorId, { roles: ['wizard'] });
    expect({ status: unknownRole.status, code: unknownRole.body.code }).toEqual({ status: 400, code: 'user.unknown_role' });
    expect((await roles(moderatorId, { roles: [] })).status).toBe(400);
    expect((await roles(999999999, { roles: ['user'] })).status).toBe(404);
    expect((await roles(adminId, { roles: ['user'] })).status).toBe(409);

    const victimId: number = (await signIn(victim)).id;
    const disable = (id: number | string) => call('POST', `/api/auth/users/${id}/disable`, { token: adminToken });
    const enable = (id: number | string) => call('POST', `/api/auth/users/${id}/enable`, { token: adminToken });
    expect((await disable(victimId)).body.user).toMatchObject({ disabled: true });
    const disabledSignIn = await call('POST', '/api/auth/signin', { body: { username: victim.username, password: victim.password } });
    expect({ status: disabledSignIn.status, code: disabledSignIn.body.code }).toEqual({ status: 403, code: 'auth.user_disabled' });
    expect((await enable(victimId)).body.user).toMatchObject({ disabled: false });
    expect((await disable(adminId)).status).toBe(409);
    for (const action of [disable, enable]) {
      expect((await action(999999999)).status).toBe(404);
      expect((await action('0')).status).toBe(400);
    }

    const events = await call('GET', '/api/auth/events?limit=2', { token: adminToken });
    expect(events.body.events).toHaveLength(2);
    expect(typeof events.body.nextBefore).toBe('number');
    expect((await call('GET', `/api/auth/events?before=${events.body.nextBefore}&type=user.signup`, { token: adminToken })).status).toBe(200);
    expect((await call('GET', `/api/auth/events?userId=${victimId}`, { token: adminToken })).body.events.length).toBeGreaterThan(0);
    expect((await call('GET', '/api/auth/events?type=user.deleted', { token: adminToken })).status).toBe(400);
  });

  it('[GET /api/auth/.well-known/jwks.json] publishes the signing keys', async () => {
    expect((await call('GET', '/api/auth/.well-known/jwks.json')).body.keys.length).toBeGreaterThan(0);
  });

  it('[GET /api/test/*] serves each board to its roles, and refuses no token, a bad one or a missing role', async () => {
    const user = (await signIn(alice)).accessToken;
    const mod = (await signIn(moderator)).accessToken;
    const root = (await signIn(admin)).accessToken;
    expect((await call('GET', '/api/test/all')).text).toBe('Public Content.');
    const boards: [string, string, string][] = [
      ['user', user, 'User Content.'],
      ['mod', mod, 'Moderator Content.'],
      ['admin', root, 'Admin Content.'],
    ];
    for (const [board, token, text] of boards) {
      expect((await call('GET', `/api/test/${board}`, { token })).text).toBe(text);
      expect((await call('GET', `/api/test/${board}`)).status).toBe(403);
      expect((await call('GET', `/api/test/${board}`, { bearer: BAD_TOKEN })).status).toBe(401);
    }
    for (const board of ['mod', 'admin']) {
      const refused = await call('GET', `/api/test/${board}`, { token: user });
      expect({ status: refused.status, code: refused.body.code }).toEqual({ status: 403, code: 'auth.missing_role' });
    }
  });

  it('answers the error body for unknown paths and for methods a path does not serve', async () => {
    for (const urlPath of ['/api/nothing', '/api/auth/nothing', '/api/test/nothing', '/internal/revocations', '/.well-known/jwks.json']) {
      expectErrorBody(await send('GET', urlPath), 404, 'request.not_found');
    }
    for (const { method, template } of operations.filter((candidate) => candidate.template.startsWith('/api/'))) {
      const other = method === 'get' ? 'DELETE' : 'PATCH';
      expectErrorBody(await send(other, template.replace(/\{[^}]+\}/g, '1')), 405, 'request.method_not_allowed');
    }
  });

  it("[/api/auth/*] answers 429 with Retry-After beyond the gateway's per-IP limit", async () => {
    // Requests that stop at auth's token check, cheap; enough to fill the current window (or
    // the next, should the minute turn meanwhile).
    let limited: Exchange | undefined;
    for (let sent = 0; !limited && sent <= 2 * AUTH_RATE_LIMIT + 2; sent += 25) {
      const batch = await Promise.all(Array.from({ length: 25 }, () => call('GET', '/api/auth/me')));
      limited = batch.find((exchange) => exchange.status === 429);
    }
    expect(limited?.body.code).toBe('gateway.rate_limited');
  });

  it('has produced every documented status of every operation, or waived it with a reason', () => {
    const missing: string[] = [];
    for (const { operation } of operations) {
      for (const [status, entry] of Object.entries(operation.responses)) {
        const key = `${operation.operationId} ${status}`;
        if ('$ref' in entry) {
          const shared = entry.$ref.replace('#/components/responses/', '');
          if (!seenShared.has(shared) && !(shared in WAIVED_SHARED_RESPONSES)) missing.push(`${key} (${shared})`);
        } else if (!seen.has(key) && !(key in WAIVED_STATUSES)) {
          missing.push(key);
        }
      }
    }
    expect(missing).toEqual([]);
    // A waiver for something the test now produces, or that the document no longer has, is stale.
    for (const key of Object.keys(WAIVED_STATUSES)) expect({ key, produced: seen.has(key) }).toEqual({ key, produced: false });
    for (const name of Object.keys(WAIVED_SHARED_RESPONSES)) expect(document.components.responses[name]).toBeDefined();
  });
});
