import { randomUUID } from 'node:crypto';
import type { Context, Middleware } from 'koa';
import { bodyParser } from '@koa/bodyparser';
import { AppError, BadRequestError } from './errors';
import type { Logger } from './logger';
import './koa-state';

export const REQUEST_ID_HEADER = 'x-request-id';
const WELL_FORMED_REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * Gives each request an id (kept from a well-formed incoming `x-request-id`, so the gateway's
 * id follows a request through every service), and the service's logger for `requestLog`.
 */
export function requestId(logger: Logger): Middleware {
  return function assignRequestId(ctx, next) {
    const incoming = ctx.get(REQUEST_ID_HEADER);
    const id = WELL_FORMED_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = id;
    ctx.state.logger = logger;
    ctx.set(REQUEST_ID_HEADER, id);
    return next();
  };
}

/**
 * The service's logger bound to the request's id, for what one request has to say beyond its
 * access line (a failure, a failing check); undefined before `requestId()` has run.
 *
 * @remarks Made when asked for, not for every request: a pino child costs more than a
 * content service's whole answer, and most requests log nothing else.
 */
export function requestLog(ctx: Pick<Context, 'state'>): Logger | undefined {
  const { logger, requestId: id } = ctx.state;
  return logger?.child({ requestId: id });
}

/**
 * One log line per request, written when the response has been sent (so it also covers
 * responses written outside Koa, such as proxied ones). Never logs headers or bodies.
 */
// Polled by orchestrators and Prometheus every few seconds: logged at debug, not info.
const PROBE_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/** Needs `requestId()` before it. At a level that leaves the line out, it costs nothing more. */
export function accessLog(): Middleware {
  return function logRequest(ctx, next) {
    const { logger } = ctx.state;
    if (!logger) throw new Error('accessLog() needs requestId() before it');
    const level = PROBE_PATHS.has(ctx.path) ? 'debug' : 'info';
    if (!logger.isLevelEnabled(level)) return next();
    const started = process.hrtime.bigint();
    // `on`, not `once`: a response closes once, and is then dropped with its listeners.
    ctx.res.on('close', () => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const status = ctx.respond === false ? ctx.res.statusCode : ctx.status;
      const line = { requestId: ctx.state.requestId, method: ctx.method, path: ctx.path, status, ms: Math.round(ms * 10) / 10 };
      logger[level](line, 'request');
    });
    return next();
  };
}

/**
 * Parses JSON request bodies within a small size limit. A body of another type is a 415; a body
 * that cannot be read (bad JSON, too large, a broken gzip stream) is a 4xx, never a 500. A
 * request without a body leaves `{}`.
 */
export function jsonBody(options: { limit?: string } = {}): Middleware {
  const parse = bodyParser({
    enableTypes: ['json'],
    jsonLimit: options.limit ?? '16kb',
    encoding: 'utf-8',
    onError(err) {
      const status = (err as { status?: unknown }).status;
      if (typeof status === 'number' && status >= 400 && status < 500) throw err;
      throw new BadRequestError('request.invalid_body', 'The request body could not be read.', { cause: err });
    },
  });
  return async function readJsonBody(ctx, next) {
    // is() answers false for a body of another type (and null without a body; an empty body
    // with a Content-Length of 0 counts as none too).
    if (ctx.request.length !== 0 && ctx.is('application/json') === false) {
      throw new AppError(415, 'request.unsupported_media_type', 'The request body must be JSON (Content-Type: application/json).');
    }
    return parse(ctx, next);
  };
}

const SECURITY_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
  'Cross-Origin-Opener-Policy': 'same-origin',
};

/**
 * Headers every response carries: no MIME sniffing, no framing, no referrer, no content of any
 * kind loaded on behalf of a JSON API; HSTS when the request came over TLS (`ctx.secure`, which
 * with `app.proxy` trusts `X-Forwarded-Proto` from the proxy in front).
 */
export function securityHeaders(): Middleware {
  return function setSecurityHeaders(ctx, next) {
    ctx.set(SECURITY_HEADERS);
    if (ctx.secure) ctx.set('Strict-Transport-Security', 'max-age=31536000; includeSubDomains');
    return next();
  };
}

/**
 * Options for `router.allowedMethods()`: a method the router does not know (PROPFIND, TRACE)
 * is a 405 like any other method a path does not serve, not the router's default 501.
 */
export function allowedMethodsOptions() {
  const methodNotAllowed = () => new AppError(405, 'request.method_not_allowed', 'Method not allowed.');
  return { throw: true, methodNotAllowed, notImplemented: methodNotAllowed };
}
