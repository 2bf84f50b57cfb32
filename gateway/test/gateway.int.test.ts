import http from 'node:http';
import { z } from 'zod';
import { createLogger, createSilentLogger, startServer, type Logger } from '@gatehouse/common';
import { createApp } from '../src/app';
import { loadConfig } from '../src/config';
import { closeUpstreamPools, createUpstreamPools } from '../src/upstreams';

// The gateway in front of fake auth and content services: real sockets on port 0 everywhere,
// so what is checked is what goes over the wire.

const ALLOWED_ORIGIN = 'http://localhost:8081';
const OTHER_ALLOWED_ORIGIN = 'https://app.example.com';
const TIMEOUT_MS = 300;
// Deliberately odd spacing: a gateway that re-serialised the JSON would change it.
const BAD_REQUEST_BODY = '{"message":"Failed! Username is already in use!",  "code" : "user.username_taken"}';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const echoSchema = z.object({
  service: z.string(),
  method: z.string(),
  url: z.string(),
  body: z.string(),
  headers: z.record(z.string(), z.union([z.string(), z.array(z.string())]).optional()),
});
type Echo = z.infer<typeof echoSchema>;

const errorSchema = z.object({ message: z.string(), code: z.string(), requestId: z.string().optional() });

interface FakeUpstream {
  server: http.Server;
  url: string;
  port: number;
  /** TCP connections accepted so far. */
  connections: number;
  /** Requests received so far, health checks not counted. */
  requests: number;
  /** What its `/readyz` answers: 200 while true, 503 once a test sets it false. */
  ready: boolean;
  /** `/readyz` requests received so far (the gateway's health checks). */
  checks: number;
  /** How long its `/readyz` takes to answer. */
  readyDelayMs: number;
}

const cleanups: (() => Promise<void> | void)[] = [];

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function listen(server: http.Server, port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('server is not on TCP');
  return address.port;
}

async function closeServer(server: http.Server): Promise<void> {
  if (!server.listening) return;
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Answers the way a test asks by path; by default echoes the request it got as JSON. */
function handleFake(service: string, fake: FakeUpstream, req: http.IncomingMessage, res: http.ServerResponse): void {
  // What an Express service would add; the gateway must not pass it on.
  res.setHeader('x-powered-by', 'Express');
  if (req.url === '/healthz' || req.url === '/readyz') {
    if (req.url === '/readyz') fake.checks += 1;
    const up = req.url === '/healthz' || fake.ready;
    const answer = () => res.writeHead(up ? 200 : 503, { 'content-type': 'application/json' }).end(`{"status":"${up ? 'ok' : 'unready'}"}`);
    if (req.url === '/readyz' && fake.readyDelayMs > 0) setTimeout(answer, fake.readyDelayMs);
    else answer();
    return;
  }
  fake.requests += 1;
  if (req.url?.endsWith('/bad-request')) {
    res.writeHead(400, { 'content-type': 'application/json; charset=utf-8' }).end(BAD_REQUEST_BODY);
    return;
  }
  if (req.url?.endsWith('/denied')) {
    res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' });
    res.end('{"message":"Unauthorized!"}');
    return;
  }
  if (req.url?.endsWith('/headers-then-die')) {
    // Status and headers, then the connection dies before any body byte.
    res.writeHead(200, { 'content-type': 'text/plain', 'x-from': service });
    res.flushHeaders();
    setTimeout(() => res.socket?.destroy(), 20);
    return;
  }
  if (req.url?.endsWith('/half')) {
    // Promise 100 bytes, send 10, then die: the client must see a broken response.
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
    res.write('0123456789', () => setTimeout(() => res.socket?.destroy(), 20));
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const echo: Echo = {
      service,
      method: req.method ?? '',
      url: req.url ?? '',
      body: Buffer.concat(chunks).toString('utf8'),
      headers: req.headers,
    };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(echo));
  });
}

async function startFakeUpstream(service: string, port = 0): Promise<FakeUpstream> {
  const server = http.createServer((req, res) => handleFake(service, fake, req, res));
  server.keepAliveTimeout = 65_000; // as startServer does for the real services
  server.on('connection', () => {
    fake.connections += 1;
  });
  const fake: FakeUpstream = { server, url: '', port: 0, connections: 0, requests: 0, ready: true, checks: 0, readyDelayMs: 0 };
  fake.port = await listen(server, port);
  fake.url = `http://127.0.0.1:${fake.port}`;
  cleanups.push(() => closeServer(server));
  return fake;
}

/** Accepts requests and never answers them. */
async function startHangingUpstream(): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer(() => {});
  const port = await listen(server);
  cleanups.push(() => closeServer(server));
  return { server, url: `http://127.0.0.1:${port}` };
}

/** A URL where nothing listens: a port that was just free. */
async function closedPortUrl(): Promise<{ url: string; port: number }> {
  const server = http.createServer();
  const port = await listen(server);
  await closeServer(server);
  return { url: `http://127.0.0.1:${port}`, port };
}

async function startGateway(upstreams: {
  auth: string;
  content: string;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
}): Promise<string> {
  const config = loadConfig({
    PORT: '0',
    AUTH_URL: upstreams.auth,
    CONTENT_URL: upstreams.content,
    CORS_ORIGINS: `${ALLOWED_ORIGIN}, ${OTHER_ALLOWED_ORIGIN}`,
    UPSTREAM_TIMEOUT_MS: String(upstreams.timeoutMs ?? TIMEOUT_MS),
    // Off unless a test is about them: a check could land in the middle of a count.
    HEALTH_CHECK_MS: '0',
    LOG_LEVEL: 'silent',
    ...upstreams.env,
  });
  const logger = upstreams.logger ?? createSilentLogger();
  const pools = createUpstreamPools(config, logger);
  const running = await startServer(createApp({ config, logger, pools }), { port: 0 });
  // Pushed after the upstreams, so run before them: gateway first, then its pools.
  cleanups.push(async () => {
    await running.close(1_000);
    closeUpstreamPools(pools);
  });
  return running.url;
}

/** Fails unless `promise` settles within `ms`. */
async function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A request with a raw `node:http` client, for headers fetch will not send. */
function rawRequest(url: string, headers: http.OutgoingHttpHeaders): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

let auth: FakeUpstream;
let content: FakeUpstream;
let gateway: string;

beforeAll(async () => {
  auth = await startFakeUpstream('auth');
  content = await startFakeUpstream('content');
  gateway = await startGateway({ auth: auth.url, content: content.url });
});

describe('routing', () => {
  it('[GET /api/test/user] forwards the path, query and headers to content', async () => {
    const res = await fetch(`${gateway}/api/test/user?page=2&q=a%20b`, {
      headers: { 'x-access-token': 'tok.en', authorization: 'Bearer tok.en' },
    });
    expect(res.status).toBe(200);
    const echo = echoSchema.parse(await res.json());
    expect(echo).toMatchObject({ service: 'content', method: 'GET', url: '/api/test/user?page=2&q=a%20b' });
    expect(echo.headers['x-access-token']).toBe('tok.en');
    expect(echo.headers.authorization).toBe('Bearer tok.en');
    expect(echo.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(echo.headers['x-forwarded-proto']).toBe('http');
  });

  it('[POST /api/auth/signup] forwards method, path and body to auth', async () => {
    const body = JSON.stringify({ username: 'ann', email: 'ann@example.com', password: 'secret-pass' });
    const res = await fetch(`${gateway}/api/auth/signup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(res.status).toBe(200);
    const echo = echoSchema.parse(await res.json());
    expect(echo).toMatchObject({ service: 'auth', method: 'POST', url: '/api/auth/signup', body });
    expect(echo.headers['content-type']).toBe('application/json');
  });

  it('[GET /api/auth] proxies the prefix itself to auth', async () => {
    const echo = echoSchema.parse(await (await fetch(`${gateway}/api/auth`)).json());
    expect(echo).toMatchObject({ service: 'auth', url: '/api/auth' });
  });

  it('[POST /api/auth/signin] streams a body it could not parse, byte for byte', async () => {
    // A gateway that parsed JSON would answer 400 here; this one never looks at the body.
    const broken = '{"username": "ann", "password": ';
    const res = await fetch(`${gateway}/api/auth/signin`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: broken,
    });
    const echo = echoSchema.parse(await res.json());
    expect(echo.body).toBe(broken);
  });

  it('[PUT /api/auth/users/7/roles] streams a body larger than any body-parser limit', async () => {
    const big = 'x'.repeat(2 * 1024 * 1024);
    const res = await fetch(`${gateway}/api/auth/users/7/roles`, {
      method: 'PUT',
      headers: { 'content-type': 'text/plain' },
      body: big,
    });
    const echo = echoSchema.parse(await res.json());
    expect(echo.method).toBe('PUT');
    expect(echo.body.length).toBe(big.length);
    expect(echo.body === big).toBe(true);
  });

  it('[POST /api/auth/signup] passes an upstream 400 through with the identical body', async () => {
    const res = await fetch(`${gateway}/api/auth/signup/bad-request`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await res.text()).toBe(BAD_REQUEST_BODY);
  });

  it('[GET /api/test/admin] passes an upstream 401 through with its WWW-Authenticate header', async () => {
    const res = await fetch(`${gateway}/api/test/admin/denied`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
    expect(await res.text()).toBe('{"message":"Unauthorized!"}');
  });

  it('[GET /] answers the tutorial welcome message', async () => {
    const res = await fetch(`${gateway}/`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ message: 'Welcome to the Node.js JWT Authentication application.' });
  });

  // `/internal/revocations` is for the services behind the gateway, never routed to clients.
  const unknownPaths = ['/nope', '/api/authx', '/api', '/api/tests/all', '/internal/revocations'];
  it.each(unknownPaths)('[GET %s] answers the JSON 404 without asking a service', async (path) => {
    const before = auth.requests + content.requests;
    const res = await fetch(`${gateway}${path}`);
    expect(res.status).toBe(404);
    const body = errorSchema.parse(await res.json());
    expect(body).toMatchObject({ message: 'Not found.', code: 'request.not_found' });
    expect(body.requestId).toBe(res.headers.get('x-request-id'));
    expect(auth.requests + content.requests).toBe(before);
  });

  it('[POST /] answers 404: the welcome route is GET only', async () => {
    expect((await fetch(`${gateway}/`, { method: 'POST' })).status).toBe(404);
  });
});

describe('request ids', () => {
  it('[GET /api/test/all] generates an id, returns it and forwards it to content', async () => {
    const res = await fetch(`${gateway}/api/test/all`);
    const id = res.headers.get('x-request-id');
    expect(id).toMatch(UUID);
    const echo = echoSchema.parse(await res.json());
    expect(echo.headers['x-request-id']).toBe(id);
  });

  it("[GET /api/auth/me] keeps a caller's well-formed id", async () => {
    const res = await fetch(`${gateway}/api/auth/me`, { headers: { 'x-request-id': 'client-42.retry_1' } });
    expect(res.headers.get('x-request-id')).toBe('client-42.retry_1');
    expect(echoSchema.parse(await res.json()).headers['x-request-id']).toBe('client-42.retry_1');
  });

  it('[GET /api/auth/me] replaces a malformed id before forwarding it', async () => {
    const res = await fetch(`${gateway}/api/auth/me`, { headers: { 'x-request-id': 'not ok; drop table' } });
    const id = res.headers.get('x-request-id');
    expect(id).toMatch(UUID);
    expect(echoSchema.parse(await res.json()).headers['x-request-id']).toBe(id);
  });
});

describe('X-Forwarded-For and X-Forwarded-Proto', () => {
  it('replaces what the client sent with the client the gateway sees, so services cannot be fooled', async () => {
    const res = await fetch(`${gateway}/api/auth/signin`, {
      headers: { 'x-forwarded-for': '203.0.113.66', 'x-forwarded-proto': 'https' },
    });
    const echo = echoSchema.parse(await res.json());
    expect(echo.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(echo.headers['x-forwarded-proto']).toBe('http');
  });

  it('with TRUST_PROXY passes on the client the proxy in front reported, as one address', async () => {
    const behindProxy = await startGateway({ auth: auth.url, content: content.url, env: { TRUST_PROXY: 'true' } });
    const res = await fetch(`${behindProxy}/api/auth/signin`, {
      headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.66', 'x-forwarded-proto': 'https' },
    });
    const echo = echoSchema.parse(await res.json());
    expect(echo.headers['x-forwarded-for']).toBe('203.0.113.66');
    expect(echo.headers['x-forwarded-proto']).toBe('https');
  });
});

describe('security headers', () => {
  function expectSecurityHeaders(res: Response): void {
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
    expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'");
    expect(res.headers.get('x-powered-by')).toBeNull();
  }

  it.each(['/api/test/all', '/api/auth/signin', '/', '/nope', '/healthz'])(
    '[GET %s] carries the security headers, proxied or not, and no X-Powered-By',
    async (path) => {
      expectSecurityHeaders(await fetch(`${gateway}${path}`));
    },
  );

  it('sends HSTS only over TLS: never to a plain-HTTP client, nor for a forged X-Forwarded-Proto', async () => {
    const res = await fetch(`${gateway}/api/test/all`, { headers: { 'x-forwarded-proto': 'https' } });
    expect(res.headers.get('strict-transport-security')).toBeNull();
  });

  it('sends HSTS behind a TLS-terminating proxy when TRUST_PROXY is set', async () => {
    const behindTls = await startGateway({ auth: auth.url, content: content.url, env: { TRUST_PROXY: 'true' } });
    const res = await fetch(`${behindTls}/api/test/all`, { headers: { 'x-forwarded-proto': 'https' } });
    expect(res.headers.get('strict-transport-security')).toBe('max-age=31536000; includeSubDomains');
  });
});

describe('rate limit on /api/auth/*', () => {
  it('answers 429 gateway.rate_limited with Retry-After past AUTH_RATE_LIMIT requests a minute from one IP, without asking auth', async () => {
    const limited = await startGateway({ auth: auth.url, content: content.url, env: { AUTH_RATE_LIMIT: '3' } });
    const before = auth.requests;
    for (let i = 0; i < 3; i += 1) expect((await fetch(`${limited}/api/auth/signin`)).status).not.toBe(429);
    const refused = await fetch(`${limited}/api/auth/signin`, { method: 'POST' });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(errorSchema.parse(await refused.json())).toMatchObject({ code: 'gateway.rate_limited' });
    expect(auth.requests - before).toBe(3);
    // Content is not behind the auth limit.
    expect((await fetch(`${limited}/api/test/all`)).status).toBe(200);
  });

  it('ignores X-Forwarded-For unless TRUST_PROXY is set, so a client cannot reset its count', async () => {
    const limited = await startGateway({ auth: auth.url, content: content.url, env: { AUTH_RATE_LIMIT: '2' } });
    await fetch(`${limited}/api/auth/signin`, { headers: { 'x-forwarded-for': '203.0.113.1' } });
    await fetch(`${limited}/api/auth/signin`, { headers: { 'x-forwarded-for': '203.0.113.2' } });
    const third = await fetch(`${limited}/api/auth/signin`, { headers: { 'x-forwarded-for': '203.0.113.3' } });
    expect(third.status).toBe(429);
  });
});

describe('CORS', () => {
  it.each([ALLOWED_ORIGIN, OTHER_ALLOWED_ORIGIN])('[GET /api/test/all] echoes the allowed origin %s', async (origin) => {
    const res = await fetch(`${gateway}/api/test/all`, { headers: { origin } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(origin);
    expect(res.headers.get('access-control-expose-headers')).toContain('x-request-id');
    expect(res.headers.get('vary')).toContain('Origin');
  });

  it('[GET /api/test/all] sends no CORS header to an origin not on the list', async () => {
    const res = await fetch(`${gateway}/api/test/all`, { headers: { origin: 'https://evil.example' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('[OPTIONS /api/auth/signin] answers an allowed preflight itself with 204 and the allowed headers', async () => {
    const before = auth.requests;
    const res = await fetch(`${gateway}/api/auth/signin`, {
      method: 'OPTIONS',
      headers: {
        origin: ALLOWED_ORIGIN,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'x-access-token, content-type',
      },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(ALLOWED_ORIGIN);
    const allowHeaders = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(',');
    const expected = ['x-access-token', 'authorization', 'content-type', 'x-request-id'];
    expect(allowHeaders).toEqual(expect.arrayContaining(expected));
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    expect(auth.requests).toBe(before);
  });

  it('[OPTIONS /api/auth/signin] answers a foreign preflight itself, without CORS headers', async () => {
    const before = auth.requests;
    const res = await fetch(`${gateway}/api/auth/signin`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(auth.requests).toBe(before);
  });
});

describe('health', () => {
  it('[GET /healthz] answers 200 while the process runs', async () => {
    const res = await fetch(`${gateway}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('[GET /readyz] answers 200 when both services answer their /readyz', async () => {
    const res = await fetch(`${gateway}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready', checks: { auth: 'ok', content: 'ok' } });
  });

  it('[GET /readyz] answers 503 naming a service that is down and one that hangs', async () => {
    const down = await closedPortUrl();
    const hanging = await startHangingUpstream();
    const faulty = await startGateway({ auth: down.url, content: hanging.url });
    const res = await fetch(`${faulty}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: 'unready', checks: { auth: 'failing', content: 'failing' } });
  });
});

describe('upstream failures', () => {
  it('[POST /api/auth/signin] answers JSON 502 gateway.upstream_unavailable when auth is down', async () => {
    const down = await closedPortUrl();
    const faulty = await startGateway({ auth: down.url, content: content.url });
    const res = await fetch(`${faulty}/api/auth/signin`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: ALLOWED_ORIGIN },
      body: '{"username":"ann"}',
    });
    expect(res.status).toBe(502);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    // The browser can read the error: CORS headers set before proxying stay on it.
    expect(res.headers.get('access-control-allow-origin')).toBe(ALLOWED_ORIGIN);
    expect(await res.json()).toEqual({
      message: 'The auth service is unavailable.',
      code: 'gateway.upstream_unavailable',
      requestId: res.headers.get('x-request-id'),
    });

    // The other upstream and the gateway's own routes are unaffected.
    expect((await fetch(`${faulty}/api/test/all`)).status).toBe(200);
    expect((await fetch(`${faulty}/`)).status).toBe(200);
  });

  it('[GET /api/auth/me] answers normally again once auth is back', async () => {
    const down = await closedPortUrl();
    const faulty = await startGateway({ auth: down.url, content: content.url });
    expect((await fetch(`${faulty}/api/auth/me`)).status).toBe(502);

    await startFakeUpstream('auth', down.port);
    const res = await fetch(`${faulty}/api/auth/me`);
    expect(res.status).toBe(200);
    expect(echoSchema.parse(await res.json()).service).toBe('auth');
  });

  it('[GET /api/test/user] answers JSON 504 gateway.upstream_timeout when content does not answer in time', async () => {
    const hanging = await startHangingUpstream();
    const faulty = await startGateway({ auth: auth.url, content: hanging.url });
    const started = Date.now();
    const res = await fetch(`${faulty}/api/test/user`);
    expect(res.status).toBe(504);
    expect(await res.json()).toEqual({
      message: 'The content service did not answer in time.',
      code: 'gateway.upstream_timeout',
      requestId: res.headers.get('x-request-id'),
    });
    // Loose bound: the configured 300 ms timeout fired, not some default of seconds.
    expect(Date.now() - started).toBeLessThan(5_000);

    // The gateway goes on serving: the other upstream, and the same one again (another 504).
    expect((await fetch(`${faulty}/api/auth/me`)).status).toBe(200);
    expect((await fetch(`${faulty}/api/test/user`)).status).toBe(504);
  });

  it('[POST /api/auth/signin] with Expect: 100-continue still answers 504 when auth does not answer in time', async () => {
    const hanging = await startHangingUpstream();
    const faulty = await startGateway({ auth: hanging.url, content: content.url });
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${faulty}/api/auth/signin`, {
        method: 'POST',
        agent: false,
        headers: { expect: '100-continue', 'content-type': 'application/json', 'content-length': '2' },
      });
      req.on('continue', () => req.end('{}'));
      req.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
    });
    const res = await within(5_000, answer, 'the 504');
    expect(res.status).toBe(504);
    expect(errorSchema.parse(JSON.parse(res.body)).code).toBe('gateway.upstream_timeout');
  });

  it('[GET /api/test/half] cuts the client connection when content dies mid-answer', async () => {
    const res = await fetch(`${gateway}/api/test/half`);
    expect(res.status).toBe(200);
    await expect(within(5_000, res.text(), 'the cut')).rejects.toThrow(/terminated|other side closed|socket/i);
  });

  it('[GET /api/test/user] frees the upstream socket when the client disconnects early', async () => {
    const hanging = await startHangingUpstream();
    // A long timeout, so only the client leaving can close the upstream socket in time.
    const slow = await startGateway({ auth: auth.url, content: hanging.url, timeoutMs: 20_000 });
    const received = new Promise<http.IncomingMessage>((resolve) => hanging.server.once('request', resolve));
    const client = http.get(`${slow}/api/test/user`, { agent: false });
    client.on('error', () => {}); // the abort below
    const upstreamReq = await received;
    const upstreamClosed = new Promise<void>((resolve) => upstreamReq.socket.once('close', () => resolve()));
    client.destroy();
    await within(2_000, upstreamClosed, 'closing the upstream socket');
  });
});

describe('upstream keep-alive', () => {
  it('[GET /api/test/all] reuses one upstream socket for sequential requests', async () => {
    const upstream = await startFakeUpstream('content');
    const gw = await startGateway({ auth: auth.url, content: upstream.url });
    expect((await fetch(`${gw}/api/test/all`)).status).toBe(200);
    expect((await fetch(`${gw}/api/test/user`)).status).toBe(200);
    expect(upstream.requests).toBe(2);
    expect(upstream.connections).toBe(1);
  });

  it("[GET /api/test/all] keeps the upstream socket open when the client sends Connection: close", async () => {
    const upstream = await startFakeUpstream('content');
    const gw = await startGateway({ auth: auth.url, content: upstream.url });
    const first = await rawRequest(`${gw}/api/test/all`, { connection: 'close' });
    expect(first.status).toBe(200);
    expect(echoSchema.parse(JSON.parse(first.body)).headers.connection).toBe('keep-alive');
    expect((await rawRequest(`${gw}/api/test/all`, { connection: 'close' })).status).toBe(200);
    expect(upstream.connections).toBe(1);
  });
});

describe('several instances of a service', () => {
  /** The service that answered each of `count` sequential GETs of `path`. */
  async function servedBy(gw: string, path: string, count: number): Promise<string[]> {
    const urls: string[] = [];
    for (let i = 0; i < count; i++) {
      const res = await fetch(`${gw}${path}`);
      expect(res.status).toBe(200);
      urls.push(echoSchema.parse(await res.json()).service);
    }
    return urls;
  }

  /** Resolves once `condition` holds, polling; fails after `ms`. */
  async function eventually(ms: number, condition: () => Promise<boolean>, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await condition())) {
      if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it('[GET /api/test/all] takes turns between the instances listed in CONTENT_URL', async () => {
    const a = await startFakeUpstream('content-a');
    const b = await startFakeUpstream('content-b');
    const gw = await startGateway({ auth: auth.url, content: `${a.url}, ${b.url}` });
    expect(await servedBy(gw, '/api/test/all', 6)).toEqual(['content-a', 'content-b', 'content-a', 'content-b', 'content-a', 'content-b']);
  });

  it('[GET /api/test/user] retries on another instance when one refuses, then leaves it out', async () => {
    const live = await startFakeUpstream('content-live');
    const down = await closedPortUrl();
    const gw = await startGateway({ auth: auth.url, content: `${down.url},${live.url}` });
    // The first request meets the refusal and is answered by the live instance all the same.
    expect(await servedBy(gw, '/api/test/user', 4)).toEqual(Array(4).fill('content-live'));
    expect(live.requests).toBe(4);
  });

  it('[POST /api/auth/signup] is never sent twice: a refusal answers 502, and later requests skip that instance', async () => {
    const live = await startFakeUpstream('auth-live');
    const down = await closedPortUrl();
    const gw = await startGateway({ auth: `${down.url},${live.url}`, content: content.url });
    const post = () =>
      fetch(`${gw}/api/auth/signup`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":"ann"}' });
    const first = await post();
    expect(first.status).toBe(502);
    expect(await first.json()).toMatchObject({ code: 'gateway.upstream_unavailable' });
    for (let i = 0; i < 3; i++) expect((await post()).status).toBe(200);
    expect(live.requests).toBe(3);
  });

  it('skips an instance whose /readyz fails, and takes it back once it passes', async () => {
    const a = await startFakeUpstream('content-a');
    const b = await startFakeUpstream('content-b');
    const gw = await startGateway({ auth: auth.url, content: `${a.url},${b.url}`, env: { HEALTH_CHECK_MS: '25' } });
    b.ready = false;
    await eventually(2_000, async () => (await servedBy(gw, '/api/test/all', 2)).every((s) => s === 'content-a'), 'leaving b out');
    expect(await servedBy(gw, '/api/test/all', 4)).toEqual(Array(4).fill('content-a'));
    b.ready = true;
    await eventually(2_000, async () => (await servedBy(gw, '/api/test/all', 2)).includes('content-b'), 'taking b back');
    expect(new Set(await servedBy(gw, '/api/test/all', 4))).toEqual(new Set(['content-a', 'content-b']));
  });

  it('takes back an instance that was refusing once it listens again', async () => {
    const a = await startFakeUpstream('content-a');
    const down = await closedPortUrl();
    const gw = await startGateway({ auth: auth.url, content: `${a.url},${down.url}`, env: { HEALTH_CHECK_MS: '25' } });
    expect(await servedBy(gw, '/api/test/all', 3)).toEqual(Array(3).fill('content-a'));
    await startFakeUpstream('content-b', down.port);
    await eventually(2_000, async () => (await servedBy(gw, '/api/test/all', 2)).includes('content-b'), 'taking b back');
  });

  it('[GET /readyz] stays ready while one instance of each service is, and names the service with none', async () => {
    const a = await startFakeUpstream('content-a');
    const b = await startFakeUpstream('content-b');
    const down = await closedPortUrl();
    const gw = await startGateway({ auth: `${down.url},${auth.url}`, content: `${a.url},${b.url}` });
    a.ready = false;
    expect((await fetch(`${gw}/readyz`)).status).toBe(200);
    b.ready = false;
    const res = await fetch(`${gw}/readyz`);
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: 'unready', checks: { auth: 'ok', content: 'failing' } });
  });

  it('[GET /api/test/headers-then-die] cuts the client when an instance dies after its headers, and does not retry elsewhere', async () => {
    const a = await startFakeUpstream('content-a');
    const b = await startFakeUpstream('content-b');
    const gw = await startGateway({ auth: auth.url, content: `${a.url},${b.url}` });
    await expect(fetch(`${gw}/api/test/headers-then-die`).then((res) => res.text())).rejects.toThrow();
    // a answered (headers) and died: a retry on b would have mixed b's answer into a's headers.
    expect(a.requests + b.requests).toBe(1);
  });

  it('[GET /readyz] shares the health-check round under way instead of starting one per call', async () => {
    const a = await startFakeUpstream('content-a');
    const b = await startFakeUpstream('content-b');
    a.readyDelayMs = 150;
    b.readyDelayMs = 150;
    const gw = await startGateway({ auth: auth.url, content: `${a.url},${b.url}` });
    const statuses = await Promise.all(Array.from({ length: 10 }, () => fetch(`${gw}/readyz`).then((res) => res.status)));
    expect(statuses).toEqual(Array(10).fill(200));
    // One round of two checks (or two rounds, if a call came in after the first ended), not ten.
    expect([a.checks, b.checks]).toEqual([a.checks, a.checks]);
    expect(a.checks).toBeLessThanOrEqual(2);
  });

  it('[GET /api/test/all] with no instance ready still tries them, so a service that is only unready still answers', async () => {
    const a = await startFakeUpstream('content-a');
    const gw = await startGateway({ auth: auth.url, content: a.url, env: { HEALTH_CHECK_MS: '25' } });
    a.ready = false;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await servedBy(gw, '/api/test/all', 2)).toEqual(['content-a', 'content-a']);
  });
});

describe('logs of a service that is down', () => {
  it('[GET /api/test/all] logs the first refusal as an error and the ones after it, while nothing else is up, at debug', async () => {
    const lines: { level: number; msg: string }[] = [];
    const logger = createLogger({
      service: 'gateway',
      level: 'debug',
      destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
    });
    const down = await closedPortUrl();
    const gw = await startGateway({ auth: auth.url, content: down.url, logger });
    for (let i = 0; i < 5; i++) expect((await fetch(`${gw}/api/test/all`)).status).toBe(502);
    const about = (msg: string) => lines.filter((line) => line.msg === msg);
    expect(about('upstream request failed')).toHaveLength(1);
    expect(about('upstream instance out of rotation')).toHaveLength(1);
    expect(about('upstream instance still refusing')).toHaveLength(4);
  });
});
