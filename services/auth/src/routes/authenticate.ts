import { isIP } from 'node:net';
import type { Context, Middleware } from 'koa';
import type { Knex } from 'knex';
import { authenticatedUser, createTokenVerifier, invalidToken, requireAuth } from '@gatehouse/tokens';
import type { AuthConfig } from '../config';
import { createUserRepository, type UserRecord } from '../db/repositories/user.repository';
import type { RequestMeta } from '../db/repositories/event.repository';
import type { KeyStore } from '../services/signing-keys';

/**
 * Where a request came from, for the audit log, the refresh-token rows and the sign-in
 * throttle. Anything but a well-formed address (a forged `X-Forwarded-For` when auth is
 * reached without the gateway) is left out.
 */
export function requestMeta(ctx: Context): RequestMeta {
  return { ip: isIP(ctx.ip) ? ctx.ip : undefined, userAgent: ctx.get('user-agent').slice(0, 512) || undefined };
}

/**
 * Aborts when the client closes the connection before its response has been sent: the
 * password work of a sign-in or sign-up still waiting for a thread is then dropped (a storm's
 * abandoned requests would otherwise hold the threads for seconds after their clients left).
 */
export function clientGone(ctx: Context): AbortSignal {
  const controller = new AbortController();
  // Gone already (while the body was read, say): 'close' has been emitted and will not be again.
  if (ctx.req.socket.destroyed) controller.abort();
  else
    ctx.res.once('close', () => {
      if (!ctx.res.writableFinished) controller.abort();
    });
  return controller.signal;
}

/**
 * `requireAuth()` for the auth service's own routes. Besides the signature and claims it checks
 * the user in the database, which auth has at hand: a disabled user, or a token older than the
 * user's last revocation, is refused at once rather than after the feed's delay.
 */
export function authenticateWithDatabase(deps: {
  keys: KeyStore;
  knex: Knex;
  config: Pick<AuthConfig, 'issuer' | 'audience'>;
  clock: () => Date;
}): Middleware {
  const users = createUserRepository(deps.knex);
  const verifySignature = createTokenVerifier({
    keys: deps.keys,
    issuer: deps.config.issuer,
    audience: deps.config.audience,
    clockToleranceSeconds: 5,
    nowSeconds: () => Math.floor(deps.clock().getTime() / 1000),
  });
  const checkToken = requireAuth({ verify: verifySignature });
  return async function authenticateAgainstDatabase(ctx, next) {
    await checkToken(ctx, async () => {
      const claims = authenticatedUser(ctx);
      const user = await users.findUserById(claims.id);
      if (!user || user.disabledAt || claims.ver < user.tokenVersion) throw invalidToken(new Error('token revoked'));
      ctx.state.account = user;
      await next();
    });
  };
}

/** The caller's user record, as `authenticateWithDatabase()` read it for this request. */
export function authenticatedAccount(ctx: { state: { account?: UserRecord } }): UserRecord {
  if (!ctx.state.account) throw new Error('authenticateWithDatabase() must run before this handler');
  return ctx.state.account;
}

declare module 'koa' {
  interface DefaultState {
    /** Set by `authenticateWithDatabase()`: the caller's user, read once per request. */
    account?: UserRecord;
  }
}
