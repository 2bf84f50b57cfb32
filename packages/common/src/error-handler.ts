import type { Middleware } from 'koa';
import { ZodError } from 'zod';
import { AppError } from './errors';

/** The JSON body of every error response. */
export interface ErrorBody {
  message: string;
  code: string;
  details?: unknown;
  requestId?: string;
}

/** Messages for the framework's own client errors (body parser, router), by status. */
const HTTP_CLIENT_ERRORS: Record<number, { code: string; message: string }> = {
  400: { code: 'request.invalid_json', message: 'The request body is not valid JSON.' },
  404: { code: 'request.not_found', message: 'Not found.' },
  405: { code: 'request.method_not_allowed', message: 'Method not allowed.' },
  413: { code: 'request.too_large', message: 'The request body is too large.' },
  415: { code: 'request.unsupported_media_type', message: 'The request body must be JSON.' },
};

function hasStatus(err: unknown): err is { status: number; expose?: boolean } {
  return typeof err === 'object' && err !== null && typeof (err as { status?: unknown }).status === 'number';
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
        const notFound = HTTP_CLIENT_ERRORS[404];
        if (notFound) throw new AppError(404, notFound.code, notFound.message);
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
      } else if (hasStatus(err) && err.status >= 400 && err.status < 500 && err.expose !== false) {
        status = err.status;
        const known = HTTP_CLIENT_ERRORS[status];
        body = known ? { ...known } : { message: 'Bad request.', code: 'request.invalid' };
      }

      const requestId = ctx.state.requestId;
      if (requestId) body.requestId = requestId;
      const log = ctx.state.log;
      if (status >= 500) log?.error({ err, status }, 'request failed');
      else log?.debug({ code: body.code, status }, 'request rejected');

      ctx.status = status;
      ctx.body = body;
    }
  };
}
