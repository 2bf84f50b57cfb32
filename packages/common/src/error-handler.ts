import type { Middleware } from 'koa';
import { ZodError } from 'zod';
import { AppError } from './errors';
import { requestLog } from './middleware';

/** The JSON body of every error response. */
export interface ErrorBody {
  message: string;
  code: string;
  details?: unknown;
  requestId?: string;
}

/**
 * Messages for the body parser's own client errors, by status. (The router's 405 is an
 * `AppError` already: see `allowedMethodsOptions()`.)
 */
const HTTP_CLIENT_ERRORS: Record<number, { code: string; message: string }> = {
  400: { code: 'request.invalid_json', message: 'The request body is not valid JSON.' },
  413: { code: 'request.too_large', message: 'The request body is too large.' },
  415: { code: 'request.unsupported_media_type', message: 'The request body must be JSON.' },
};

function hasStatus(err: unknown): err is { status: number; expose?: boolean } {
  return typeof err === 'object' && err !== null && typeof (err as { status?: unknown }).status === 'number';
}

// Node's connection errors and PostgreSQL's "cannot connect now" / shutdown / connection
// failure SQLSTATEs: the database is down or restarting, which is a 503, not a bug.
// 57014 is a statement cancelled by statement_timeout, 55P03 a lock not obtained in time: the
// database is too slow to answer, which is a 503 too.
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  '57P01',
  '57P03',
  '08001',
  '08006',
  '57014',
  '55P03',
]);

// node-postgres reports a connection lost mid-use (the server restarted, a proxy cut it) with
// plain errors that carry no code.
const CONNECTION_LOST_MESSAGES = [
  'Connection terminated unexpectedly',
  'Connection terminated',
  'Connection terminated due to connection timeout',
  'Client has encountered a connection error and is not queryable',
];

/** True for a failure to reach the database (knex's pool timeout included), as opposed to a bug. */
function isDatabaseUnavailable(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  if (err instanceof Error && err.name === 'KnexTimeoutError') return true;
  // knex prefixes the driver's message with the SQL: "select … - Connection terminated …".
  if (err instanceof Error && CONNECTION_LOST_MESSAGES.some((lost) => err.message === lost || err.message.endsWith(` - ${lost}`))) {
    return true;
  }
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && UNAVAILABLE_CODES.has(code);
}

/** Turns an issue path such as `['body', 'email']` into `body.email`. */
function formatZodError(err: ZodError): { message: string; details: { path: string; message: string }[] } {
  const details = err.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message }));
  const first = details[0];
  const message = first ? `Invalid input: ${first.path ? `${first.path}: ` : ''}${first.message}` : 'Invalid input.';
  return { message, details };
}

/**
 * The first middleware of every service: the only place that writes an error body.
 *
 * @remarks Anything that is not an `AppError`, a zod error or an exposed client error from
 * the framework becomes a generic 500: its text (SQL, stack, paths) is logged, never sent.
 */
export function errorHandler(): Middleware {
  return async function handleErrors(ctx, next) {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined && ctx.respond !== false) {
        throw new AppError(404, 'request.not_found', 'Not found.');
      }
    } catch (err) {
      let status = 500;
      let body: ErrorBody = { message: 'Internal server error.', code: 'internal_error' };
      if (err instanceof AppError) {
        status = err.status;
        body = { message: err.message, code: err.code, details: err.details };
        if (err.headers) ctx.set(err.headers);
      } else if (err instanceof ZodError) {
        status = 400;
        body = { code: 'request.invalid_input', ...formatZodError(err) };
      } else if (isDatabaseUnavailable(err)) {
        status = 503;
        body = { message: 'The service is temporarily unavailable. Try again shortly.', code: 'service.unavailable' };
      } else if (hasStatus(err) && err.status >= 400 && err.status < 500 && err.expose !== false) {
        status = err.status;
        const known = HTTP_CLIENT_ERRORS[status];
        body = known ? { ...known } : { message: 'Bad request.', code: 'request.invalid' };
      }

      const requestId = ctx.state.requestId;
      if (requestId) body.requestId = requestId;
      if (status >= 500) requestLog(ctx)?.error({ err, status }, 'request failed');
      else if (ctx.state.logger?.isLevelEnabled('debug')) requestLog(ctx)?.debug({ code: body.code, status }, 'request rejected');

      ctx.status = status;
      ctx.body = body;
    }
  };
}
