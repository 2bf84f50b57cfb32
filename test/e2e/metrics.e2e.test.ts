import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildUser, type Json } from '@gatehouse/testing';
import { startStack, type RunningStack } from './stack';

// The whole stack as `pnpm start` runs it (embedded database, logs at info), driven through the
// gateway: sign-up, sign-ins good, bad and locked, a refresh and its reuse, protected reads, and
// a burst past the gateway's rate limit. Then each service's /metrics is scraped and its counters
// must have moved by exactly what was done, with no id, name or token in any label; and the
// request ids the gateway hands out must show up in the logs of the services behind it.

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-e2e-metrics-'));
let stack: RunningStack | undefined;

/** The gateway's per-IP limit on /api/auth/*, per minute: room for the flow, then a burst past it. */
const AUTH_RATE_LIMIT = 30;
/** How long a count or a log line may take to show on a busy machine. */
const DEADLINE_MS = 10_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  // DATABASE_URL empty: the embedded database under DATA_DIR, whatever the test run's env holds.
  stack = await startStack({
    DATA_DIR: dataDir,
    DATABASE_URL: '',
    BCRYPT_COST: '4',
    LOG_LEVEL: 'info',
    AUTH_RATE_LIMIT: String(AUTH_RATE_LIMIT),
    // Two failures for one account from one IP lock it: the third attempt is a "locked" one.
    SIGNIN_MAX_FAILURES: '2',
  });
}, 120_000);

afterAll(async () => {
  if (stack) await stack.interrupt();
  stack?.kill();
  fs.rmSync(dataDir, { recursive: true, force: true });
}, 60_000);

function running(): RunningStack {
  if (!stack) throw new Error('stack not started');
  return stack;
}

type Service = 'gateway' | 'auth' | 'content';

interface Answer {
  status: number;
  body: Json;
  requestId: string | null;
}

/** A JSON request through the gateway. */
async function call(
  method: string,
  urlPath: string,
  options: { body?: unknown; token?: string; requestId?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.token) headers['x-access-token'] = options.token;
  if (options.requestId) headers['x-request-id'] = options.requestId;
  const res = await fetch(`${running().gatewayUrl}${urlPath}`, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await res.text();
  let body: Json = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body, requestId: res.headers.get('x-request-id') };
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus's text format, one sample per line (comments skipped). */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, name, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      if (name !== undefined && value !== undefined) labels[name] = value;
    }
    samples.push({ name: match[1] ?? '', labels, value: Number(match[3]) });
  }
  return samples;
}

interface Scrape {
  text: string;
  samples: Sample[];
}

async function scrape(service: Service): Promise<Scrape> {
  const res = await fetch(`http://127.0.0.1:${running().ports[service]}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
  const text = await res.text();
  return { text, samples: parseMetrics(text) };
}

/** Scrapes `service` until `done` holds of the scrape or the deadline passes; the last scrape. */
async function scrapeUntil(service: Service, done: (scrape: Scrape) => boolean): Promise<Scrape> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const scraped = await scrape(service);
    if (done(scraped) || Date.now() > deadline) return scraped;
    await sleep(100);
  }
}

/** The value of `name` summed over the samples whose labels include `labels`; 0 when there is none. */
function valueOf(scrape: Scrape, name: string, labels: Record<string, string> = {}): number {
  return scrape.samples
    .filter((sample) => sample.name === name && Object.entries(labels).every(([key, want]) => sample.labels[key] === want))
    .reduce((sum, sample) => sum + sample.value, 0);
}

/** The launcher's log lines of `service` (its prefix) that carry `requestId=<id>`. */
function logLinesWithId(service: Service, id: string): string[] {
  return running()
    .output()
    .split('\n')
    .filter((line) => line.startsWith(`${service.padEnd(8)}|`) && line.includes(`requestId=${id}`));
}

/** Waits until every one of `services` has logged a line with `id`; returns who has. */
async function servicesLogging(id: string, services: Service[]): Promise<Service[]> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const seen = services.filter((service) => logLinesWithId(service, id).length > 0);
    if (seen.length === services.length || Date.now() > deadline) return seen;
    await sleep(100);
  }
}

describe('metrics and request ids across the stack', () => {
  const user = buildUser();
  // An account that does not exist: its failures lock it (account + IP) without touching the user.
  const ghost = buildUser();
  const before = {} as Record<Service, Scrape>;
  const after = {} as Record<Service, Scrape>;
  const secrets: string[] = [];
  let rateLimited = 0;
  let userId = '';

  beforeAll(async () => {
    for (const service of ['gateway', 'auth', 'content'] as const) before[service] = await scrape(service);
  }, 30_000);

  it('runs the flow: sign-ins good, bad and locked, reads, a refresh and its reuse', async () => {
    expect((await call('POST', '/api/auth/signup', { body: user })).status).toBe(201);

    expect((await call('POST', '/api/auth/signin', { body: { username: user.username, password: 'wrong-Password-1' } })).status).toBe(401);
    const signedIn = await call('POST', '/api/auth/signin', { body: { username: user.username, password: user.password } });
    expect(signedIn.status).toBe(200);
    const { accessToken, refreshToken } = signedIn.body;
    userId = String(signedIn.body.id);
    secrets.push(accessToken, refreshToken, user.username, user.email);

    for (let i = 0; i < 2; i += 1) {
      expect((await call('POST', '/api/auth/signin', { body: { username: ghost.username, password: ghost.password } })).status).toBe(401);
    }
    const locked = await call('POST', '/api/auth/signin', { body: { username: ghost.username, password: ghost.password } });
    expect(locked.status).toBe(429);
    expect(locked.body.code).toBe('auth.too_many_attempts');

    // Reads at content, before the reuse below revokes the user's access tokens.
    for (let i = 0; i < 2; i += 1) expect((await call('GET', '/api/test/user', { token: accessToken })).status).toBe(200);
    expect((await call('GET', '/api/test/user', { token: 'not-a-token' })).status).toBe(401);
    expect((await call('GET', '/api/test/all')).status).toBe(200);
    // A path with an id, and paths that match nothing: their labels must be patterns.
    // (403 "No token provided!", the tutorial's answer to a missing token.)
    expect((await call('GET', `/api/auth/users/${userId}`)).status).toBe(403);
    expect((await call('GET', '/api/test/zz-unrouted-a1b2c3')).status).toBe(404);
    expect((await call('GET', '/zz-nowhere-d4e5f6')).status).toBe(404);

    const rotated = await call('POST', '/api/auth/refreshtoken', { body: { refreshToken } });
    expect(rotated.status).toBe(200);
    secrets.push(rotated.body.accessToken, rotated.body.refreshToken);
    const reused = await call('POST', '/api/auth/refreshtoken', { body: { refreshToken } });
    expect(reused.status).toBe(403);
    expect(reused.body.code).toBe('auth.refresh_token_reused');
    const unknown = randomBytes(32).toString('base64url');
    expect((await call('POST', '/api/auth/refreshtoken', { body: { refreshToken: unknown } })).status).toBe(403);
    secrets.push(unknown);
  }, 60_000);

  it('never proxies a service\'s /metrics through the gateway', async () => {
    for (const urlPath of ['/api/auth/metrics', '/api/test/metrics']) {
      const answer = await call('GET', urlPath);
      expect(answer.status).toBe(404);
      expect(JSON.stringify(answer.body)).not.toContain('# HELP');
    }
  });

  it('carries the gateway\'s x-request-id into the logs of the service behind it', async () => {
    // No id sent: the gateway makes one, returns it, and hands it to auth or content.
    const signIn = await call('POST', '/api/auth/signin', { body: { username: user.username, password: 'wrong-Password-2' } });
    const read = await call('GET', '/api/test/all');
    expect(signIn.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(read.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(await servicesLogging(signIn.requestId ?? '', ['gateway', 'auth'])).toEqual(['gateway', 'auth']);
    expect(await servicesLogging(read.requestId ?? '', ['gateway', 'content'])).toEqual(['gateway', 'content']);
    expect(logLinesWithId('content', signIn.requestId ?? '')).toEqual([]);

    // One id the client chose for one user action that calls both services: in all three logs.
    const correlation = `e2e-${randomBytes(6).toString('hex')}`;
    await call('GET', '/api/auth/me', { requestId: correlation });
    const board = await call('GET', '/api/test/all', { requestId: correlation });
    expect(board.requestId).toBe(correlation);
    expect(await servicesLogging(correlation, ['gateway', 'auth', 'content'])).toEqual(['gateway', 'auth', 'content']);
    // The lines are the services' JSON logs: the launcher prints their fields as key=value.
    expect(logLinesWithId('content', correlation).some((line) => / INFO {2}request .*method=GET path=\/api\/test\/all status=200/.test(line))).toBe(true);
  }, 30_000);

  it('refuses past the gateway\'s rate limit', async () => {
    // Every refusal the client sees must be counted once. A few are enough; the loop is bounded
    // in case a window boundary passes in the middle of the burst.
    const statuses: number[] = [];
    while (rateLimited < 3 && statuses.length < AUTH_RATE_LIMIT * 3) {
      const { status } = await call('GET', '/api/auth/me');
      statuses.push(status);
      if (status === 429) rateLimited += 1;
    }
    expect(rateLimited).toBe(3);
    // The rest went through to auth, which refused them for want of a token.
    expect(new Set(statuses)).toEqual(new Set([403, 429]));
  }, 60_000);

  it('counts sign-ins, refreshes and requests at auth by outcome, route pattern and status', async () => {
    // Counted when each response has been sent: wait for the last of them.
    after.auth = await scrapeUntil('auth', (scraped) => valueOf(scraped, 'gatehouse_signin_total', { outcome: 'bad_credentials' }) - valueOf(before.auth, 'gatehouse_signin_total', { outcome: 'bad_credentials' }) >= 4);
    const delta = (name: string, labels: Record<string, string>) => valueOf(after.auth, name, labels) - valueOf(before.auth, name, labels);

    expect(delta('gatehouse_signin_total', { outcome: 'success' })).toBe(1);
    expect(delta('gatehouse_signin_total', { outcome: 'bad_credentials' })).toBe(4);
    expect(delta('gatehouse_signin_total', { outcome: 'locked' })).toBe(1);
    expect(delta('gatehouse_signin_total', { outcome: 'error' })).toBe(0);
    expect(delta('gatehouse_refresh_total', { outcome: 'rotated' })).toBe(1);
    expect(delta('gatehouse_refresh_total', { outcome: 'reused' })).toBe(1);
    expect(delta('gatehouse_refresh_total', { outcome: 'unknown' })).toBe(1);

    const signin = { method: 'POST', route: '/api/auth/signin' };
    expect(delta('http_requests_total', { ...signin, status: '200' })).toBe(1);
    expect(delta('http_requests_total', { ...signin, status: '401' })).toBe(4);
    expect(delta('http_requests_total', { ...signin, status: '429' })).toBe(1);
    expect(delta('http_requests_total', { method: 'POST', route: '/api/auth/signup', status: '201' })).toBe(1);
    expect(delta('http_requests_total', { method: 'GET', route: '/api/auth/users/:id', status: '403' })).toBe(1);
    expect(delta('http_requests_total', { method: 'POST', route: '/api/auth/refreshtoken', status: '403' })).toBe(2);
    expect(delta('http_request_duration_seconds_count', { ...signin, status: '200' })).toBe(1);
    // The gateway's probe of /api/auth/metrics reached auth, which has no such route.
    expect(delta('http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).toBe(1);

    for (const state of ['used', 'free', 'pending']) {
      expect(after.auth.samples.some((sample) => sample.name === 'gatehouse_db_pool_connections' && sample.labels.state === state)).toBe(true);
    }
    expect(valueOf(after.auth, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
  });

  it('counts reads at content and its JWKS fetches', async () => {
    const all = { method: 'GET', route: '/api/test/all', status: '200' };
    after.content = await scrapeUntil('content', (scraped) => valueOf(scraped, 'http_requests_total', all) - valueOf(before.content, 'http_requests_total', all) >= 3);
    const delta = (name: string, labels: Record<string, string>) => valueOf(after.content, name, labels) - valueOf(before.content, name, labels);

    expect(delta('http_requests_total', { method: 'GET', route: '/api/test/user', status: '200' })).toBe(2);
    expect(delta('http_requests_total', { method: 'GET', route: '/api/test/user', status: '401' })).toBe(1);
    expect(delta('http_requests_total', all)).toBe(3);
    // /api/test/zz-unrouted-… and the gateway's probe of /api/test/metrics.
    expect(delta('http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).toBe(2);
    // main's warm-up fetch at start, at least.
    expect(valueOf(after.content, 'gatehouse_jwks_refresh_total', { outcome: 'ok' })).toBeGreaterThanOrEqual(1);
    expect(after.content.samples.some((sample) => sample.name === 'gatehouse_jwks_refresh_total' && sample.labels.outcome === 'failed')).toBe(true);
  });

  it('counts the gateway\'s requests by prefix and every rate-limit refusal', async () => {
    const refused = { method: 'GET', route: '/api/auth/*', status: '429' };
    after.gateway = await scrapeUntil('gateway', (scraped) => valueOf(scraped, 'http_requests_total', refused) - valueOf(before.gateway, 'http_requests_total', refused) >= rateLimited);
    const delta = (name: string, labels: Record<string, string> = {}) => valueOf(after.gateway, name, labels) - valueOf(before.gateway, name, labels);

    expect(delta('gatehouse_rate_limited_total')).toBe(rateLimited);
    expect(delta('http_requests_total', refused)).toBe(rateLimited);
    // /api/test/user twice, /api/test/all three times.
    expect(delta('http_requests_total', { method: 'GET', route: '/api/test/*', status: '200' })).toBe(5);
    expect(delta('http_requests_total', { method: 'GET', route: '/api/test/*', status: '401' })).toBe(1);
    expect(delta('http_requests_total', { method: 'GET', route: '/api/test/*', status: '404' })).toBe(2);
    expect(delta('http_request_duration_seconds_count', { route: '/api/test/*' })).toBe(8);
    // Sign-in and refresh.
    expect(delta('http_requests_total', { method: 'POST', route: '/api/auth/*', status: '200' })).toBe(2);
    expect(delta('http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
  });

  it('puts no id, name, token or raw path in any label', () => {
    for (const service of ['gateway', 'auth', 'content'] as const) {
      const scraped = after[service];
      expect(scraped).toBeDefined();
      for (const secret of [...secrets, 'zz-unrouted-a1b2c3', 'zz-nowhere-d4e5f6', `/users/${userId}`]) {
        expect(scraped.text).not.toContain(secret);
      }
      const routes = new Set(scraped.samples.flatMap((sample) => (sample.labels.route === undefined ? [] : [sample.labels.route])));
      expect(routes.size).toBeGreaterThan(0);
      for (const route of routes) expect(route).toMatch(/^(unmatched|(\/[A-Za-z._:*-]*)+)$/);
    }
  });

});
