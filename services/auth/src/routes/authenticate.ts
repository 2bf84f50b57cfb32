import { isIP } from 'node:net';
import type { Context, Middleware } from 'koa';
import type { Knex } from 'knex';
import { createTokenVerifier, invalidToken, requireAuth, type AccessTokenClaims } from '@gatehouse/tokens';
import type { AuthConfig } from '../config';
import { createUserRepository } from '../db/repositories/user.repository';
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
  return requireAuth({
    async verify(token): Promise<AccessTokenClaims> {
      const claims = await verifySignature(token);
      const user = await users.findUserById(claims.id);
      if (!user || user.disabledAt || claims.ver < user.tokenVersion) throw invalidToken(new Error('token revoked'));
      return claims;
    },
  });
}
