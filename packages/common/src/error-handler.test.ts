import { Writable } from 'node:stream';
import Koa from 'koa';
import { z } from 'zod';
import { readJson } from '@gatehouse/testing';
import { errorHandler } from './error-handler';
import { BadRequestError, UnauthorizedError } from './errors';
import { createLogger } from './logger';
import { jsonBody, requestId } from './middleware';
import { startServer, type RunningServer } from './server';

const logLines: string[] = [];
const sink = new Writable({
  write(chunk, _encoding, done) {
    logLines.push(String(chunk));
    done();
  },
});
let server: RunningServer;

beforeAll(async () => {
  const app = new Koa();
  app.use(errorHandler());
  app.use(requestId(createLogger({ service: 'test', level: 'debug', destination: sink })));
  app.use(jsonBody());
  app.use(async (ctx) => {
    switch (ctx.path) {
      case '/app-error':
        throw new UnauthorizedError('auth.invalid_token', 'Unauthorized!', { headers: { 'WWW-Authenticate': 'Bearer' } });
      case '/zod':
        z.strictObject({ name: z.string() }).parse(ctx.request.body);
        return;
      case '/db-lost':
        throw new Error('select * from "users" - Connection terminated unexpectedly');
      case '/crash':
        throw new Error('relation "users" does not exist at SELECT password_hash FROM users');
      case '/echo':
        ctx.body = { got: ctx.request.body };
        return;
      case '/bad-request':
        throw new BadRequestError('user.taken', 'Failed! Username is already in use!', { details: { field: 'username' } });
      default:
        return; // nothing set: Koa's 404
    }
  });
  server = await startServer(app, { port: 0 });
});

afterAll(() => server.close());

const post = (path: string, body: string, contentType = 'application/json') =>
  fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': contentType }, body });

describe('errorHandler', () => {
  it('answers an AppError with its status, message, code and headers', async () => {
    const res = await fetch(`${server.url}/app-error`, { headers: { 'x-request-id': 'abc-123' } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    expect(await readJson(res)).toEqual({ message: 'Unauthorized!', code: 'auth.invalid_token', requestId: 'abc-123' });
  });

  it('keeps details of an AppError', async () => {
    const body = await readJson(await fetch(`${server.url}/bad-request`));
    expect(body).toMatchObject({ code: 'user.taken', details: { field: 'username' } });
  });

  it('answers a zod error with 400 request.invalid_input naming the field', async () => {
    const res = await post('/zod', JSON.stringify({ name: 42 }));
    expect(res.status).toBe(400);
    const body = await readJson(res);
    expect(body.code).toBe('request.invalid_input');
    expect(body.message).toMatch(/^Invalid input: name: /);
    expect(body.details).toEqual([{ path: 'name', message: expect.any(String) }]);
  });

  it('answers malformed JSON with 400 request.invalid_json', async () => {
    const res = await post('/echo', '{"a":');
    expect(res.status).toBe(400);
    expect(await readJson(res)).toMatchObject({ code: 'request.invalid_json' });
  });

  it('answers a body over 16 KiB with 413 request.too_large', async () => {
    const res = await post('/echo', JSON.stringify({ pad: 'x'.repeat(17 * 1024) }));
    expect(res.status).toBe(413);
    expect(await readJson(res)).toMatchObject({ code: 'request.too_large' });
  });

  it('answers an unexpected error with a generic 500 that leaks no text, and logs it with the stack', async () => {
    const res = await fetch(`${server.url}/crash`);
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ message: 'Internal server error.', code: 'internal_error' });
    expect(text).not.toMatch(/password_hash|users|at /);
    expect(logLines.join('')).toContain('relation \\"users\\" does not exist');
  });

  it('answers a database connection lost mid-query with 503 service.unavailable, not a 500', async () => {
    const res = await fetch(`${server.url}/db-lost`);
    expect(res.status).toBe(503);
    expect(await readJson(res)).toMatchObject({ code: 'service.unavailable' });
  });

  it('answers an unknown path with a JSON 404', async () => {
    const res = await fetch(`${server.url}/nothing`);
    expect(res.status).toBe(404);
    expect(await readJson(res)).toMatchObject({ code: 'request.not_found' });
  });

  it.each(['application/x-www-form-urlencoded', 'text/plain', 'multipart/form-data; boundary=x', 'application/xml'])(
    'answers a %s body with 415 request.unsupported_media_type',
    async (contentType) => {
      const res = await post('/echo', 'name=x', contentType);
      expect(res.status).toBe(415);
      expect(await readJson(res)).toMatchObject({ code: 'request.unsupported_media_type', message: expect.stringContaining('JSON') });
    },
  );

  it('reads application/json with a charset', async () => {
    expect(await readJson(await post('/echo', '{"a":1}', 'application/json; charset=utf-8'))).toEqual({ got: { a: 1 } });
  });

  it('leaves {} for a request without a body, whatever its content type', async () => {
    const res = await fetch(`${server.url}/echo`, { method: 'POST', headers: { 'content-type': 'text/plain' } });
    expect(await readJson(res)).toEqual({ got: {} });
  });

  it('refuses a body with a __proto__ key with a 400, and no prototype changes', async () => {
    const res = await post('/echo', '{"__proto__":{"polluted":true}}');
    expect(res.status).toBe(400);
    expect(await readJson(res)).toMatchObject({ code: 'request.invalid_json' });
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('keeps constructor.prototype a plain own field of the parsed body: nothing is polluted', async () => {
    const body = await readJson(await post('/echo', '{"a":{"constructor":{"prototype":{"polluted":true}}}}'));
    expect(body.got).toEqual({ a: { constructor: { prototype: { polluted: true } } } });
    expect(Object.prototype).not.toHaveProperty('polluted');
  });
});

describe('requestId', () => {
  it('keeps a well-formed incoming x-request-id and replaces a malformed one', async () => {
    const kept = await fetch(`${server.url}/echo`, { headers: { 'x-request-id': 'gw-1.2_3' } });
    expect(kept.headers.get('x-request-id')).toBe('gw-1.2_3');
    const replaced = await fetch(`${server.url}/echo`, { headers: { 'x-request-id': 'bad id\twith spaces' } });
    expect(replaced.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});
