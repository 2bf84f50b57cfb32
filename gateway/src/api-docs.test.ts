import Koa from 'koa';
import Ajv2020 from 'ajv/dist/2020';
import { buildOpenApiDocument, ERRORS } from '@gatehouse/api';
import { createSilentLogger, errorHandler, requestId, securityHeaders, startServer, type RunningServer } from '@gatehouse/common';
import { readJson } from '@gatehouse/testing';
import { apiDocs } from './api-docs';

// The middleware as the gateway mounts it: after the error handler and the security headers.
let server: RunningServer;

beforeAll(async () => {
  const app = new Koa();
  app.use(errorHandler());
  app.use(requestId(createSilentLogger()));
  app.use(securityHeaders());
  app.use(apiDocs());
  app.use((ctx) => {
    if (ctx.path === '/api/else') ctx.body = { reached: true };
  });
  server = await startServer(app, { port: 0 });
});

afterAll(() => server.close());

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${server.url}${path}`, { headers });
// As a browser revalidates. (fetch() itself would add `Cache-Control: no-cache`, which forbids a 304.)
const revalidate = (path: string, etag: string | null) => get(path, { 'if-none-match': etag ?? '', 'cache-control': 'max-age=0' });

/** Every value under `value` for `key`, however deep. */
function collect(value: unknown, key: string): unknown[] {
  if (Array.isArray(value)) return value.flatMap((item) => collect(item, key));
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([name, child]) => (name === key ? [child] : []).concat(collect(child, key)));
}

/** What a local `$ref` (`#/a/b`) points at in `document`, or undefined. */
function resolveRef(document: unknown, ref: string): unknown {
  const step = (node: unknown, part: string) =>
    typeof node === 'object' && node !== null ? Object.entries(node).find(([name]) => name === part)?.[1] : undefined;
  return ref.replace(/^#\//, '').split('/').reduce<unknown>(step, document);
}

describe('GET /api/openapi.json', () => {
  it('answers the OpenAPI 3.1 document built from @gatehouse/api, revalidated by ETag', async () => {
    const res = await get('/api/openapi.json');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    const etag = res.headers.get('etag');
    expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
    const document = await readJson(res);
    expect(document).toEqual(JSON.parse(JSON.stringify(buildOpenApiDocument())));
    expect(document.openapi).toBe('3.1.0');

    const again = await revalidate('/api/openapi.json', etag);
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
  });

  it('keeps the API\'s own Content-Security-Policy on the document', async () => {
    const res = await get('/api/openapi.json');
    expect(res.headers.get('content-security-policy')).toBe("default-src 'none'; frame-ancestors 'none'");
  });

  it('leaves other methods and paths to the next middleware', async () => {
    expect((await fetch(`${server.url}/api/openapi.json`, { method: 'POST' })).status).toBe(404);
    expect(await readJson(await get('/api/else'))).toEqual({ reached: true });
  });
});

describe('the document', () => {
  const document = buildOpenApiDocument();

  it('resolves every $ref inside itself', () => {
    const refs = collect(document, '$ref');
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) {
      expect(typeof ref).toBe('string');
      expect({ ref, found: resolveRef(document, String(ref)) !== undefined }).toEqual({ ref, found: true });
    }
  });

  it('holds only schemas that compile as JSON Schema 2020-12 in strict mode', () => {
    const ajv = new Ajv2020({ strict: true, formats: { email: true, 'date-time': true } });
    // The document's own fields are not JSON Schema keywords; its schemas are reached by pointer.
    for (const field of Object.keys(document)) ajv.addKeyword(field);
    ajv.addSchema(document, 'openapi.json');
    const pointers = Object.keys(document.components.schemas).map((name) => `/components/schemas/${name}`);
    for (const [path, item] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        for (const [status, response] of Object.entries(operation.responses)) {
          if ('$ref' in response) continue;
          for (const type of Object.keys(response.content ?? {})) {
            const escape = (part: string) => part.replaceAll('~', '~0').replaceAll('/', '~1');
            pointers.push(`/paths/${escape(path)}/${method}/responses/${status}/content/${escape(type)}/schema`);
          }
        }
      }
    }
    for (const pointer of pointers) expect(() => ajv.compile({ $ref: `openapi.json#${pointer}` })).not.toThrow();
  });

  it('gives every operation a unique operationId and a success, and names only catalogued error codes', () => {
    const ids = new Set<string>();
    for (const item of Object.values(document.paths)) {
      for (const operation of Object.values(item)) {
        expect(ids.has(operation.operationId)).toBe(false);
        ids.add(operation.operationId);
        expect(Object.keys(operation.responses).some((status) => status.startsWith('2'))).toBe(true);
      }
    }
    const codes = collect(document, 'code').flatMap((code) => collect(code, 'const'));
    expect(codes.length).toBeGreaterThan(0);
    for (const code of codes) expect(Object.keys(ERRORS)).toContain(code);
  });
});

describe('GET /api/docs', () => {
  it('answers an HTML page with a CSP of its own that allows this origin only, and no inline script', async () => {
    const res = await get('/api/docs');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toMatch(/unsafe-inline|unsafe-eval|https?:/);
    // The rest of the security headers still apply.
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');

    const html = await res.text();
    const scripts = [...html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attributes, content] of scripts) {
      expect(attributes).toMatch(/src="\/api\/docs\/assets\//);
      expect(content?.trim()).toBe('');
    }
    expect(html).not.toMatch(/style=|<style/);
  });

  it('serves every file the page loads from the gateway itself, with its type and a cache policy', async () => {
    const html = await (await get('/api/docs')).text();
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1] ?? '');
    expect(urls.filter((url) => url.startsWith('/api/docs/assets/'))).toHaveLength(5);
    for (const url of urls) expect(url).toMatch(/^\/api\//);

    const types: Record<string, RegExp> = { js: /^text\/javascript/, css: /^text\/css/, png: /^image\/png$/ };
    for (const url of urls.filter((candidate) => candidate.startsWith('/api/docs/assets/'))) {
      const res = await get(url);
      expect({ url, status: res.status }).toEqual({ url, status: 200 });
      expect(res.headers.get('content-type')).toMatch(types[url.split('.').pop() ?? ''] ?? /^$/);
      expect(res.headers.get('cache-control')).toBe('public, max-age=86400');
      const again = await revalidate(url, res.headers.get('etag'));
      expect(again.status).toBe(304);
    }
  });

  it('starts Swagger UI on /api/openapi.json, with no call to the online validator', async () => {
    const script = await (await get('/api/docs/assets/docs.js')).text();
    expect(script).toContain('url: "/api/openapi.json"');
    expect(script).toContain('validatorUrl: null');
    const bundle = await get('/api/docs/assets/swagger-ui-bundle.js');
    expect((await bundle.text()).length).toBeGreaterThan(100_000);
  });

  it('serves no other file of the package directory', async () => {
    for (const path of ['/api/docs/assets/package.json', '/api/docs/assets/..%2Fpackage.json', '/api/docs/assets/', '/api/docs/assets/index.html']) {
      expect({ path, status: (await get(path)).status }).toEqual({ path, status: 404 });
    }
  });
});
