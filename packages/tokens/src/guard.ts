import type { Middleware } from 'koa';
import { ForbiddenError } from '@gatehouse/common';
import type { AccessTokenClaims, RoleName } from './claims';

declare module 'koa' {
  interface DefaultState {
    /** Set by `requireAuth()`: the verified claims of the caller's access token. */
    user?: AccessTokenClaims;
  }
}

/**
 * Reads the token the way the tutorial's clients send it: `x-access-token: <t>`, or
 * `Authorization: Bearer <t>` (a bare token in `Authorization` is accepted too, as the
 * tutorial did).
 */
export function readToken(headers: { [name: string]: string | string[] | undefined }): string | undefined {
  const first = (raw: string | string[] | undefined) => (Array.isArray(raw) ? raw[0] : raw)?.trim();
  // An empty x-access-token (some clients always send the header) does not hide Authorization.
  const value = first(headers['x-access-token']) || first(headers.authorization);
  if (!value) return undefined;
  const token = /^bearer(\s|$)/i.test(value) ? value.slice('bearer'.length).trim() : value;
  return token || undefined;
}

/**
 * Requires a valid access token: 403 `No token provided!` without one (the tutorial's status),
 * 401 `Unauthorized!` for a bad one. Puts the claims on `ctx.state.user`.
 */
export function requireAuth(options: { verify: (token: string) => Promise<AccessTokenClaims> }): Middleware {
  return async function authenticate(ctx, next) {
    const token = readToken(ctx.headers);
    if (!token) throw new ForbiddenError('auth.no_token', 'No token provided!');
    ctx.state.user = await options.verify(token);
    await next();
  };
}

const ROLE_REQUIRED_MESSAGE: Record<RoleName, string> = {
  user: 'Require User Role!',
  moderator: 'Require Moderator Role!',
  admin: 'Require Admin Role!',
};

/** After `requireAuth()`: 403 with the tutorial's message unless the token carries `role`. */
export function requireRole(role: RoleName): Middleware {
  return function checkRole(ctx, next) {
    if (!ctx.state.user?.roles.includes(role)) {
      throw new ForbiddenError('auth.missing_role', ROLE_REQUIRED_MESSAGE[role], { details: { required: role } });
    }
    return next();
  };
}

/** The claims `requireAuth()` put on the context; for handlers mounted after it. */
export function authenticatedUser(ctx: { state: { user?: AccessTokenClaims } }): AccessTokenClaims {
  if (!ctx.state.user) throw new Error('requireAuth() must run before this handler');
  return ctx.state.user;
}
