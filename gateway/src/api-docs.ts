import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Context, Middleware } from 'koa';
import { buildOpenApiDocument, type OpenApiDocument } from '@gatehouse/api';

export const OPENAPI_PATH = '/api/openapi.json';
export const DOCS_PATH = '/api/docs';
const ASSETS_PATH = `${DOCS_PATH}/assets/`;

// The page's own policy, in place of the API's `default-src 'none'`: scripts, styles and the
// document from this origin only (Swagger UI's icons are data: URIs in its CSS), no inline
// script, nothing framed or framing. "Try it out" calls the API on the same origin.
const DOCS_PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

// Revalidated on every use (cheap with the ETag), so a new deployment is seen at once.
const REVALIDATE = 'no-cache';
// Swagger UI's files change only with the package; a day is short enough for an upgrade.
const ASSET_CACHE = 'public, max-age=86400';

const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gatehouse API</title>
<link rel="stylesheet" href="${ASSETS_PATH}swagger-ui.css">
<link rel="stylesheet" href="${ASSETS_PATH}docs.css">
<link rel="icon" type="image/png" href="${ASSETS_PATH}favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<noscript>This page needs JavaScript. The OpenAPI document itself is at <a href="${OPENAPI_PATH}">${OPENAPI_PATH}</a>.</noscript>
<script src="${ASSETS_PATH}swagger-ui-bundle.js"></script>
<script src="${ASSETS_PATH}docs.js"></script>
</body>
</html>
`;

// An external script, not an inline one, so the page's CSP needs no 'unsafe-inline'.
const DOCS_SCRIPT = `window.ui = SwaggerUIBundle({
  url: ${JSON.stringify(OPENAPI_PATH)},
  dom_id: '#swagger-ui',
  deepLinking: true,
  layout: 'BaseLayout',
  // No badge fetched from validator.swagger.io.
  validatorUrl: null,
});
`;

const DOCS_STYLE = 'body { margin: 0; background: #fafafa; }\n';

/** A response body with its type and validator. */
interface Resource {
  body: Buffer;
  type: string;
  etag: string;
}

function resource(body: string | Buffer, type: string): Resource {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  return { body: bytes, type, etag: `"${createHash('sha256').update(bytes).digest('base64url').slice(0, 27)}"` };
}

/** Answers with `resource`, or 304 when the client's copy is current. */
function send(ctx: Context, { body, type, etag }: Resource, cacheControl: string): void {
  ctx.status = 200;
  ctx.type = type;
  ctx.etag = etag;
  ctx.set('Cache-Control', cacheControl);
  if (ctx.fresh) {
    ctx.status = 304;
    return;
  }
  ctx.body = body;
}

/**
 * Where swagger-ui-dist's files are. Through the package's own `absolute-path.js` (which loads
 * nothing else), as a plain `require` that the production bundle (scripts/build.ts) sees and
 * links next to itself; `require.resolve` would escape it. Called when the middleware is
 * built, so a missing package fails start-up rather than the first page view.
 */
function swaggerUiDistDir(): string {
  // No types ship for it: what it exports is checked below.
  const absolutePath: unknown = require('swagger-ui-dist/absolute-path.js');
  const dir: unknown = typeof absolutePath === 'function' ? absolutePath() : undefined;
  if (typeof dir !== 'string') throw new Error('swagger-ui-dist/absolute-path.js did not name a directory');
  return dir;
}

export interface ApiDocsOptions {
  /** The document to serve; built from @gatehouse/api when omitted. */
  document?: OpenApiDocument;
}

/**
 * Serves the OpenAPI 3.1 document of the public API at `GET /api/openapi.json`, and a Swagger
 * UI page reading it at `GET /api/docs`, with Swagger UI's files from swagger-ui-dist under
 * `/api/docs/assets/` (no CDN). Everything else goes to `next`.
 *
 * @remarks The document is built once, here. The page sends its own Content-Security-Policy
 * (scripts and styles from this origin), replacing the API's `default-src 'none'`, which would
 * stop it from loading anything; mount this after `securityHeaders()`.
 */
export function apiDocs(options: ApiDocsOptions = {}): Middleware {
  const document = resource(JSON.stringify(options.document ?? buildOpenApiDocument()), 'application/json; charset=utf-8');
  const page = resource(DOCS_PAGE, 'text/html; charset=utf-8');
  const swaggerUiDir = swaggerUiDistDir();
  const fromSwaggerUi = (file: string, type: string) => () => readFile(path.join(swaggerUiDir, file)).then((bytes) => resource(bytes, type));
  const assets = new Map<string, () => Promise<Resource>>([
    ['swagger-ui-bundle.js', fromSwaggerUi('swagger-ui-bundle.js', 'text/javascript; charset=utf-8')],
    ['swagger-ui.css', fromSwaggerUi('swagger-ui.css', 'text/css; charset=utf-8')],
    ['favicon-32x32.png', fromSwaggerUi('favicon-32x32.png', 'image/png')],
    ['docs.js', async () => resource(DOCS_SCRIPT, 'text/javascript; charset=utf-8')],
    ['docs.css', async () => resource(DOCS_STYLE, 'text/css; charset=utf-8')],
  ]);
  // Each file is read once, on its first request; a failed read is retried on the next one.
  const loaded = new Map<string, Promise<Resource>>();
  const loadAsset = (name: string, load: () => Promise<Resource>): Promise<Resource> => {
    const known = loaded.get(name);
    if (known) return known;
    const loading = load();
    loaded.set(name, loading);
    loading.catch(() => loaded.delete(name));
    return loading;
  };

  return async function serveApiDocs(ctx, next) {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === OPENAPI_PATH) return send(ctx, document, REVALIDATE);
    if (ctx.path === DOCS_PATH) {
      send(ctx, page, REVALIDATE);
      ctx.set('Content-Security-Policy', DOCS_PAGE_CSP);
      return;
    }
    if (!ctx.path.startsWith(ASSETS_PATH)) return next();
    const name = ctx.path.slice(ASSETS_PATH.length);
    const load = assets.get(name);
    if (!load) return next();
    send(ctx, await loadAsset(name, load), ASSET_CACHE);
  };
}
