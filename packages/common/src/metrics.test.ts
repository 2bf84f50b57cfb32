import http from 'node:http';
import Koa from 'koa';
import { errorHandler } from './error-handler';
import { UnauthorizedError } from './errors';
import { createSilentLogger } from './logger';
import { createMetrics, httpMetrics, metricsRoute, type Metrics } from './metrics';
import { requestId } from './middleware';
import { startServer, type RunningServer } from './server';

/** An app as the services build theirs: error handler first, then request ids, then metrics. */
function buildApp(metrics: Metrics): Koa {
  const app = new Koa();
  app.use(errorHandler());
  app.use(requestId(createSilentLogger()));
  app.use(httpMetrics(metrics));
  app.use(metricsRoute(metrics));
  app.use(async function handler(ctx, next) {
    // What @koa/router does for a route it matched; this package does not depend on it.
    const user = /^\/users\/[^/]+$/.exec(ctx.path);
    if (user) {
      Reflect.set(ctx, '_matchedRoute', '/users/:id');
      if (ctx.get('authorization') !== 'ok') throw new UnauthorizedError('auth.invalid_token', 'Unauthorized!');
      ctx.body = { ok: true };
      return;
    }
    if (ctx.path === '/raw') {
      // Written outside Koa, as the gateway's proxy does.
      Reflect.set(ctx, '_matchedRoute', '/raw');
      ctx.respond = false;
      ctx.res.writeHead(202, { 'content-type': 'text/plain' });
      ctx.res.end('raw');
      return;
    }
    return next();
  });
  return app;
}

const servers: RunningServer[] = [];

async function start(metrics = createMetrics()): Promise<{ url: string; metrics: Metrics }> {
  const running = await startServer(buildApp(metrics), { port: 0 });
  servers.push(running);
  return { url: running.url, metrics };
}

afterAll(async () => {
  await Promise.all(servers.map((server) => server.close()));
});

/** `http_requests_total` for these labels, once the server has counted it (after the response). */
async function requestsCounted(metrics: Metrics, labels: Record<string, string>, expected: number): Promise<number> {
  const deadline = Date.now() + 2_000;
  for (;;) {
    const metric = await metrics.registry.getSingleMetric('http_requests_total')?.get();
    const value =
      metric?.values.find((entry) => Object.entries(labels).every(([name, want]) => entry.labels[name] === want))?.value ?? 0;
    if (value === expected || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Sends a request with any method, WebDAV ones included. */
function rawRequest(url: string, method: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('httpMetrics()', () => {
  it('counts requests by method, route pattern and status, never by raw path', async () => {
    const { url, metrics } = await start();
    const ids = ['a1b2c3d4-secret-looking-id', 'alice.example'];
    for (const id of ids) expect((await fetch(`${url}/users/${id}`, { headers: { authorization: 'ok' } })).status).toBe(200);
    expect((await fetch(`${url}/users/7`)).status).toBe(401);

    expect(await requestsCounted(metrics, { method: 'GET', route: '/users/:id', status: '200' }, 2)).toBe(2);
    expect(await requestsCounted(metrics, { method: 'GET', route: '/users/:id', status: '401' }, 1)).toBe(1);
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const id of ids) expect(text).not.toContain(id);
    expect(text).toMatch(/http_request_duration_seconds_count\{method="GET",route="\/users\/:id",status="200"\} 2/);
    expect(text).toMatch(/http_request_duration_seconds_bucket\{le="0.001",method="GET",route="\/users\/:id",status="200"\}/);
  });

  it('labels a path nothing matched "unmatched", and an unusual method "OTHER"', async () => {
    const { url, metrics } = await start();
    expect((await fetch(`${url}/wp-admin/../etc/passwd?token=abc`)).status).toBe(404);
    expect(await rawRequest(`${url}/anything`, 'PROPFIND')).toBe(404);

    expect(await requestsCounted(metrics, { method: 'GET', route: 'unmatched', status: '404' }, 1)).toBe(1);
    expect(await requestsCounted(metrics, { method: 'OTHER', route: 'unmatched', status: '404' }, 1)).toBe(1);
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).not.toContain('passwd');
    expect(text).not.toContain('PROPFIND');
  });

  it('takes the status of a response written outside Koa', async () => {
    const { url, metrics } = await start();
    expect((await fetch(`${url}/raw`, { method: 'POST' })).status).toBe(202);
    expect(await requestsCounted(metrics, { method: 'POST', route: '/raw', status: '202' }, 1)).toBe(1);
  });

  it('reports http_requests_total equal to the duration histogram\'s count for every label set, in scrapes made at once', async () => {
    const { url } = await start();
    await fetch(`${url}/users/1`, { headers: { authorization: 'ok' } });
    await fetch(`${url}/users/2`, { headers: { authorization: 'ok' } });
    await fetch(`${url}/users/3`);
    await fetch(`${url}/nowhere`);
    await fetch(`${url}/raw`, { method: 'POST' });
    await fetch(`${url}/metrics`);

    /** `name{labels} value` lines of one metric, keyed by their labels in a fixed order. */
    const series = (text: string, name: string) => {
      const found = new Map<string, number>();
      for (const [, labels = '', value] of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
        found.set(labels.split(',').sort().join(','), Number(value));
      }
      return found;
    };
    const scrapes = await Promise.all([1, 2, 3].map(async () => (await fetch(`${url}/metrics`)).text()));
    for (const text of scrapes) {
      const counted = series(text, 'http_requests_total');
      expect(counted.size).toBeGreaterThanOrEqual(5);
      expect(counted).toEqual(series(text, 'http_request_duration_seconds_count'));
    }
  });

  it('keeps each app its own counts: two apps in one process share no registry', async () => {
    const first = await start();
    const second = await start();
    await fetch(`${first.url}/users/1`, { headers: { authorization: 'ok' } });
    expect(await requestsCounted(first.metrics, { route: '/users/:id', status: '200' }, 1)).toBe(1);
    expect(await requestsCounted(second.metrics, { route: '/users/:id', status: '200' }, 0)).toBe(0);
  });
});

describe('metricsRoute()', () => {
  it('[GET /metrics] answers the app\'s and the process\'s metrics in Prometheus text format', async () => {
    const { url, metrics } = await start();
    metrics.counter({ name: 'gatehouse_test_total', help: 'A counter registered after the route was built.' }).inc(3);
    await fetch(`${url}/healthz`);

    const res = await fetch(`${url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-store');
    const text = await res.text();
    expect(text).toContain('# TYPE http_requests_total counter');
    expect(text).toContain('gatehouse_test_total 3');
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
    // Scrapes are counted like any request, under their fixed path.
    expect(await requestsCounted(metrics, { route: '/metrics', status: '200' }, 1)).toBe(1);
  });

  it('answers only GET and HEAD at /metrics exactly', async () => {
    const { url } = await start();
    expect((await fetch(`${url}/metrics`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${url}/metrics`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${url}/metrics/x`)).status).toBe(404);
  });
});
