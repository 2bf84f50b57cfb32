import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Middleware } from 'koa';
import { AppError, NotFoundError } from '@gatehouse/common';

/**
 * Where `pnpm install` builds the web console (`console/build.mjs`, the console package's
 * `prepare` script), found from this file's place in the repository. The gateway needs the
 * built files, not the console's code, so it locates them by path rather than depending on
 * the package.
 */
export const DEFAULT_CONSOLE_DIR = path.resolve(__dirname, '../../console/dist');

const PREFIX = '/console';

/**
 * The console's own Content-Security-Policy, replacing the API's `default-src 'none'` (see
 * `securityHeaders()`) on the console's responses: the page may load its script and
 * stylesheet from this origin and call the API here, and nothing else — no inline script or
 * style, no other origin, no framing, no plain form submission (forms are sent by the script),
 * and no HTML-from-string DOM sinks (Trusted Types, where the browser supports them).
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

/** The types the console's files are served as; a file of any other type is not served. */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
};

// The files the build writes: a flat directory of names such as `app.js`. Only such a name is
// looked up, so no request can name a path: no `/` or `\`, no `%`-encoding, no leading dot, and
// every dot followed by a name character, which rules out `.` and `..`.
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+$/;

function notFound(): AppError {
  return new NotFoundError('request.not_found', 'Not found.');
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}

/**
 * Serves the built web console at `/console/`: `index.html` for `/console` and `/console/`,
 * and the files beside it (`/console/app.js`, `/console/style.css`) with their content types.
 * GET and HEAD only (405 otherwise); anything else under `/console/` is the gateway's JSON 404.
 *
 * @remarks Every file is sent with `Cache-Control: no-cache` and an ETag: the names carry no
 * content hash, so browsers revalidate (a 304 when nothing changed) and see a new build at
 * once. Files are read on each request (they are a few tens of KiB), so a rebuild needs no
 * restart. Mount it after `securityHeaders()`, whose CSP it replaces with `CONSOLE_CSP`, and
 * after `errorHandler()`, which writes its 404 and 405 bodies.
 */
export function serveConsole(options: { dir: string }): Middleware {
  const dir = path.resolve(options.dir);
  return async function serveConsoleFile(ctx, next) {
    const requested = ctx.path;
    if (requested !== PREFIX && !requested.startsWith(`${PREFIX}/`)) return next();
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      throw new AppError(405, 'request.method_not_allowed', 'Method not allowed.', { headers: { Allow: 'GET, HEAD' } });
    }
    const rest = requested.slice(PREFIX.length + 1);
    const name = rest === '' ? 'index.html' : rest;
    const type = CONTENT_TYPES[path.extname(name)];
    if (!FILE_NAME.test(name) || type === undefined) throw notFound();
    const file = path.join(dir, name);
    // Cannot fail after the name check; kept so that a looser pattern could never escape `dir`.
    if (path.dirname(file) !== dir) throw notFound();

    let content: Buffer;
    try {
      content = await readFile(file);
    } catch (err) {
      if (!isMissing(err)) throw err;
      if (name === 'index.html') {
        throw new NotFoundError(
          'console.not_built',
          'The console is not built: run `pnpm install` or `pnpm --filter @gatehouse/console build`.',
        );
      }
      throw notFound();
    }

    ctx.status = 200;
    ctx.type = type;
    ctx.set('Content-Security-Policy', CONSOLE_CSP);
    ctx.set('Cache-Control', 'no-cache');
    ctx.etag = createHash('sha256').update(content).digest('base64url').slice(0, 27);
    if (ctx.fresh) {
      ctx.status = 304;
      return;
    }
    ctx.body = content;
  };
}
