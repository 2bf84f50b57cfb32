import Koa from 'koa';
import { errorHandler, requestId, createSilentLogger, startServer, type RunningServer } from '@gatehouse/common';
import { readJson } from '@gatehouse/testing';
import { rateLimitPerIp } from './rate-limit';

// A real Koa app on port 0 behind the limiter, with a hand-driven clock and the client IP
// taken from X-Forwarded-For, so one test can play several clients.
const clock = { ms: 1_000_000 };
let server: RunningServer;

beforeAll(async () => {
  const app = new Koa({ proxy: true, maxIpsCount: 1 });
  app.use(errorHandler());
  app.use(requestId(createSilentLogger()));
  app.use(rateLimitPerIp({ limit: 3, windowMs: 60_000, now: () => clock.ms, maxClients: 5 }));
  app.use((ctx) => {
    ctx.body = { ok: true };
  });
  server = await startServer(app, { port: 0 });
});

afterAll(() => server.close());

const from = (ip: string) => fetch(server.url, { headers: { 'x-forwarded-for': ip } });

describe('rateLimitPerIp', () => {
  it('lets `limit` requests of one IP through per window, then answers 429 with Retry-After until the window ends', async () => {
    clock.ms = 10 * 60_000;
    for (let i = 0; i < 3; i += 1) expect((await from('10.0.0.1')).status).toBe(200);
    clock.ms += 15_000;
    const refused = await from('10.0.0.1');
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('45');
    expect(await readJson(refused)).toMatchObject({ code: 'gateway.rate_limited', message: 'Too many requests. Try again later.' });
    // Another client is not affected.
    expect((await from('10.0.0.2')).status).toBe(200);
    clock.ms += 45_000;
    expect((await from('10.0.0.1')).status).toBe(200);
  });

  it('keeps counting refused requests without growing past limit + 1', async () => {
    clock.ms = 20 * 60_000;
    for (let i = 0; i < 3; i += 1) await from('10.0.0.3');
    for (let i = 0; i < 5; i += 1) expect((await from('10.0.0.3')).status).toBe(429);
  });

  it('counts new clients beyond maxClients in one window together, so a flood of addresses limits itself', async () => {
    clock.ms = 30 * 60_000;
    for (let client = 1; client <= 5; client += 1) await from(`10.1.0.${client}`);
    // Three requests from three new addresses share one count and pass; the fourth does not.
    for (const ip of ['10.1.0.97', '10.1.0.98', '10.1.0.99']) expect((await from(ip)).status).toBe(200);
    expect((await from('10.1.0.100')).status).toBe(429);
    // The clients counted before keep their own limit.
    for (let i = 0; i < 2; i += 1) expect((await from('10.1.0.1')).status).toBe(200);
    expect((await from('10.1.0.1')).status).toBe(429);
  });

  it('counts the addresses of one IPv6 /64 as one client', async () => {
    clock.ms = 40 * 60_000;
    for (const host of ['1', '2', '3']) expect((await from(`2001:db8:1:2::${host}`)).status).toBe(200);
    expect((await from('2001:db8:1:2::4')).status).toBe(429);
    expect((await from('2001:db8:1:3::1')).status).toBe(200);
  });
});
