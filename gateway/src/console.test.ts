import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import Koa from 'koa';
import { createSilentLogger, errorHandler, requestId, securityHeaders, startServer, type RunningServer } from '@gatehouse/common';
import { readJson } from '@gatehouse/testing';
import { CONSOLE_CSP, serveConsole } from './console';

// serveConsole() in a Koa app with the gateway's first middleware (errors, request id, security
// headers), on a real port, over a built console in a temporary directory. Beside that
// directory lies a file no request may ever read.

const SECRET = 'SECRET-outside-the-console-dir';
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-console-'));
const dist = path.join(root, 'dist');
const files = {
  'index.html': '<!doctype html><title>console</title>',
  'app.js': 'console.log("app");',
  'style.css': 'body { margin: 0 }',
};
const servers: RunningServer[] = [];
let base: string;

function appServing(dir: string): Koa {
  const app = new Koa();
  app.use(errorHandler());
  app.use(requestId(createSilentLogger()));
  app.use(securityHeaders());
  app.use(serveConsole({ dir }));
  app.use(function rest(ctx) {
    ctx.body = { reached: 'next' };
  });
  return app;
}

beforeAll(async () => {
  fs.mkdirSync(dist);
  for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dist, name), content);
  fs.writeFileSync(path.join(root, 'secret.txt'), SECRET);
  fs.writeFileSync(path.join(root, 'secret.js'), SECRET);
  fs.writeFileSync(path.join(dist, 'notes.md'), SECRET);
  fs.writeFileSync(path.join(dist, '.hidden.js'), SECRET);
  fs.mkdirSync(path.join(dist, 'sub.js'));
  const server = await startServer(appServing(dist), { port: 0 });
  servers.push(server);
  base = server.url;
});

afterAll(async () => {
  for (const server of servers) await server.close();
  fs.rmSync(root, { recursive: true, force: true });
});

/** A request with the path exactly as written: fetch() would resolve `..` and `%2e%2e` first. */
function rawGet(rawPath: string): Promise<{ status: number; body: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path: rawPath, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('serveConsole', () => {
  it.each(['/console', '/console/', '/console/index.html'])('[GET %s] serves index.html as HTML under the console CSP', async (urlPath) => {
    const res = await fetch(`${base}${urlPath}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('content-security-policy')).toBe(CONSOLE_CSP);
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(res.headers.get('etag')).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
    // The rest of securityHeaders() stays.
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(await res.text()).toBe(files['index.html']);
  });

  it('[GET /console/app.js, /console/style.css] serves the files with their content types', async () => {
    const script = await fetch(`${base}/console/app.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await script.text()).toBe(files['app.js']);
    const style = await fetch(`${base}/console/style.css`);
    expect(style.status).toBe(200);
    expect(style.headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect(await style.text()).toBe(files['style.css']);
  });

  it('[HEAD /console/app.js] answers the headers and length without a body', async () => {
    const res = await fetch(`${base}/console/app.js`, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(files['app.js'])));
    expect(await res.text()).toBe('');
  });

  it('answers 304 to a matching If-None-Match, and the new file once it changed', async () => {
    const first = await fetch(`${base}/console/style.css`);
    const etag = first.headers.get('etag') ?? '';
    // As a browser revalidates; fetch() would otherwise add `Cache-Control: no-cache` to a
    // conditional request, which rightly asks for the full answer.
    const revalidate = { 'if-none-match': etag, 'cache-control': 'max-age=0' };
    const again = await fetch(`${base}/console/style.css`, { headers: revalidate });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');

    const rebuilt = 'body { margin: 1px }';
    fs.writeFileSync(path.join(dist, 'style.css'), rebuilt);
    try {
      const changed = await fetch(`${base}/console/style.css`, { headers: revalidate });
      expect(changed.status).toBe(200);
      expect(changed.headers.get('etag')).not.toBe(etag);
      expect(await changed.text()).toBe(rebuilt);
    } finally {
      fs.writeFileSync(path.join(dist, 'style.css'), files['style.css']);
    }
  });

  it.each(['/console/missing.js', '/console/notes.md', '/console/sub.js', '/console/.hidden.js', '/console/app.js/x', '/console/APP.JS.map'])(
    '[GET %s] answers the JSON 404 for a file that is not served',
    async (urlPath) => {
      const res = await fetch(`${base}${urlPath}`);
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
      const body = await readJson(res);
      expect(body).toMatchObject({ code: 'request.not_found', message: 'Not found.' });
      expect(typeof body.requestId).toBe('string');
    },
  );

  it.each([
    '/console/../secret.txt',
    '/console/../secret.js',
    '/console/%2e%2e/secret.js',
    '/console/%2E%2E/secret.js',
    '/console/..%2fsecret.js',
    '/console/%2e%2e%2fsecret.js',
    '/console/..%5csecret.js',
    '/console/..\\secret.js',
    '/console/sub.js/../../secret.js',
    '/console//' + path.join(root, 'secret.js'),
    '/console/' + encodeURIComponent(path.join(root, 'secret.js')),
    '/console/app.js%00.js',
    '/console/.',
    '/console/..',
    '/console/%2e%2e',
  ])('[GET %s] never reads outside the console directory', async (rawPath) => {
    const res = await rawGet(rawPath);
    expect(res.body).not.toContain(SECRET);
    expect(res.status).toBe(404);
  });

  it('[POST /console/] answers 405 with Allow: GET, HEAD', async () => {
    const res = await fetch(`${base}/console/`, { method: 'POST' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
    expect(await readJson(res)).toMatchObject({ code: 'request.method_not_allowed' });
  });

  it.each(['/', '/consoles', '/console.js', '/api/test/all'])('[GET %s] leaves paths outside /console to the next middleware', async (urlPath) => {
    const res = await fetch(`${base}${urlPath}`);
    expect(res.status).toBe(200);
    expect(await readJson(res)).toEqual({ reached: 'next' });
    // The API's own policy, not the console's.
    expect(res.headers.get('content-security-policy')).not.toBe(CONSOLE_CSP);
  });

  it('[GET /console/] says how to build the console when it is not built', async () => {
    const server = await startServer(appServing(path.join(root, 'not-built')), { port: 0 });
    servers.push(server);
    const res = await fetch(`${server.url}/console/`);
    expect(res.status).toBe(404);
    expect(await readJson(res)).toMatchObject({ code: 'console.not_built', message: expect.stringContaining('pnpm install') });
  });
});
