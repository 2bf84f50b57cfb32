import http from 'node:http';
import type net from 'node:net';
import Koa from 'koa';
import { startServer, type RunningServer } from './server';

// What a keep-alive client sees while startServer's close() runs. The same with real
// processes and SIGTERM: test/e2e/shutdown.e2e.test.ts.

let server: RunningServer | undefined;
let release: () => void = () => {};

beforeEach(async () => {
  const app = new Koa();
  app.use(async (ctx) => {
    if (ctx.path === '/slow') await new Promise<void>((resolve) => (release = resolve));
    // As http-proxy does for a proxied answer: the upstream's Connection header, set by hand.
    if (ctx.path === '/keep-alive-header') ctx.set('connection', 'keep-alive');
    ctx.body = { path: ctx.path };
  });
  server = await startServer(app, { port: 0 });
});

afterEach(async () => {
  release();
  await server?.close(100);
});

function running(): RunningServer {
  if (!server) throw new Error('server not started');
  return server;
}

interface Answer {
  status?: number;
  connection?: string;
  body?: string;
  error?: string;
  /** Sent on a kept-alive connection that had served a request before. */
  reused?: boolean;
}

function get(agent: http.Agent, path: string): Promise<Answer> {
  return new Promise((resolve) => {
    const req = http.get(`${running().url}${path}`, { agent }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('close', () =>
        resolve(
          res.complete
            ? { status: res.statusCode, connection: res.headers.connection, body, reused: req.reusedSocket }
            : { error: 'incomplete body' },
        ),
      );
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
  });
}

/** A keep-alive agent that has made one request, and its socket, now idle in the pool. */
async function warmAgent(): Promise<{ agent: http.Agent; socket: net.Socket }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const free = new Promise<net.Socket>((resolve) => agent.once('free', resolve));
  expect((await get(agent, '/')).connection).toBe('keep-alive');
  return { agent, socket: await free };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('startServer close()', () => {
  it('answers a request under way, with Connection: close, and resolves without cutting anything', async () => {
    const agent = new http.Agent({ keepAlive: true });
    const answer = get(agent, '/slow');
    await sleep(50);
    const closed = running().close();
    await sleep(50);
    release();
    expect(await answer).toMatchObject({ status: 200, connection: 'close', body: '{"path":"/slow"}' });
    expect(await closed).toEqual({ forced: false });
    agent.destroy();
  });

  it('answers a request sent on an idle keep-alive connection just after close() began, instead of resetting it', async () => {
    // http.Server#close() destroys idle connections at once: this request got ECONNRESET.
    const { agent } = await warmAgent();
    const closed = running().close();
    expect(await get(agent, '/')).toEqual({ status: 200, connection: 'close', body: '{"path":"/"}', reused: true });
    expect(await closed).toEqual({ forced: false });
  });

  it('says Connection: close even when the handler set keep-alive itself (a proxied answer)', async () => {
    const { agent } = await warmAgent();
    void running().close();
    expect(await get(agent, '/keep-alive-header')).toMatchObject({ status: 200, connection: 'close' });
  });

  it('closes a connection left idle after a short while, cleanly, and stops listening at once', async () => {
    const { socket } = await warmAgent();
    let error: Error | undefined;
    socket.on('error', (err) => (error = err));
    const socketClosed = new Promise((resolve) => socket.once('close', resolve));
    const startedAt = Date.now();
    const closed = running().close();
    const refused = await get(new http.Agent(), '/');
    expect(refused).toEqual({ error: 'ECONNREFUSED' });
    await socketClosed;
    expect(error).toBeUndefined();
    expect(await closed).toEqual({ forced: false });
    // The idle connection waited its moment, not the server's 65 s keep-alive timeout.
    expect(Date.now() - startedAt).toBeLessThan(5_000);
  });

  it('cuts a request still under way after the grace period, and says so', async () => {
    const agent = new http.Agent({ keepAlive: true });
    const answer = get(agent, '/slow');
    await sleep(50);
    expect(await running().close(200)).toEqual({ forced: true });
    expect((await answer).error).toBeDefined();
    agent.destroy();
  });
});
