import Koa from 'koa';
import { errorHandler } from './error-handler';
import { createLogger } from './logger';
import { accessLog, requestId } from './middleware';
import { startServer, type RunningServer } from './server';

// accessLog on a real server: one line per request, at debug for what probes poll.

describe('accessLog', () => {
  const lines: { level: number; msg: string; path?: string; status?: number; requestId?: string }[] = [];
  let server: RunningServer;

  beforeAll(async () => {
    const logger = createLogger({ service: 'test', level: 'debug', destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
    const app = new Koa();
    app.use(requestId(logger));
    app.use(accessLog());
    app.use((ctx) => {
      ctx.body = { ok: true };
    });
    server = await startServer(app, { port: 0 });
  });

  afterAll(async () => {
    await server.close();
  });

  it('logs a request at info with its path, status and request id, and the probes at debug', async () => {
    for (const path of ['/api/test/user', '/healthz', '/readyz', '/metrics']) {
      expect((await fetch(`${server.url}${path}`, { headers: { 'x-request-id': `id-${path.slice(1).replace(/\//g, '-')}` } })).status).toBe(200);
    }
    // The line is written when the response closes, just after the client has it.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const requests = lines.filter((line) => line.msg === 'request');
    expect(requests.map((line) => [line.path, line.level, line.status])).toEqual([
      ['/api/test/user', 30, 200],
      ['/healthz', 20, 200],
      ['/readyz', 20, 200],
      ['/metrics', 20, 200],
    ]);
    expect(requests[0]?.requestId).toBe('id-api-test-user');
  });
});

describe('accessLog above info', () => {
  it('writes no access lines at warn, while a failure is still logged with its request id', async () => {
    const lines: { level: number; msg: string; requestId?: string }[] = [];
    const logger = createLogger({ service: 'test', level: 'warn', destination: { write: (line: string) => void lines.push(JSON.parse(line)) } });
    const app = new Koa();
    app.use(errorHandler());
    app.use(requestId(logger));
    app.use(accessLog());
    app.use((ctx) => {
      if (ctx.path === '/boom') throw new Error('broken on purpose');
      ctx.body = { ok: true };
    });
    const server = await startServer(app, { port: 0 });
    try {
      expect((await fetch(`${server.url}/api/test/user`)).status).toBe(200);
      expect((await fetch(`${server.url}/boom`, { headers: { 'x-request-id': 'id-boom' } })).status).toBe(500);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(lines.map((line) => [line.msg, line.level, line.requestId])).toEqual([['request failed', 50, 'id-boom']]);
    } finally {
      await server.close();
    }
  });
});
