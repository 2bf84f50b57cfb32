import Koa from 'koa';
import Router from '@koa/router';
import type { Knex } from 'knex';
import { accessLog, allowedMethodsOptions, errorHandler, healthRoutes, jsonBody, requestId, securityHeaders, type Logger } from '@gatehouse/common';
import type { AuthConfig } from './config';
import { createUserRepository } from './db/repositories/user.repository';
import { authRoutes } from './routes/auth/auth.routes';
import { authenticateWithDatabase } from './routes/authenticate';
import { revocationRoutes } from './routes/internal/revocations.routes';
import { jwksRoutes } from './routes/jwks/jwks.routes';
import { userRoutes } from './routes/users/users.routes';
import { createAdminService } from './services/admin.service';
import { createAuthService } from './services/auth.service';
import { createPasswordHasher, type BcryptEngine } from './services/passwords';
import { createSigninThrottle } from './services/signin-throttle';
import { keyRetentionSeconds, type KeyStore } from './services/signing-keys';

export interface AppDeps {
  config: Pick<
    AuthConfig,
    | 'issuer'
    | 'audience'
    | 'accessTokenTtlSeconds'
    | 'refreshTokenTtlSeconds'
    | 'refreshReuseIntervalSeconds'
    | 'bcryptCost'
    | 'trustProxy'
    | 'signinThrottle'
  >;
  knex: Knex;
  keys: KeyStore;
  logger: Logger;
  clock?: () => Date;
  /** Where bcrypt runs; main passes a worker-thread pool, tests default to this thread. */
  bcrypt?: BcryptEngine;
}

/** Builds the auth service's Koa app; a new one on every call, holding nothing global. */
export function createApp(deps: AppDeps): Koa {
  const { config, knex, keys, logger } = deps;
  const clock = deps.clock ?? (() => new Date());
  const auth = createAuthService({
    knex,
    passwords: createPasswordHasher(config.bcryptCost, deps.bcrypt),
    throttle: createSigninThrottle(knex, config.signinThrottle),
    keys,
    tokens: config,
    clock,
  });
  const admin = createAdminService({ knex, clock });
  const authenticate = authenticateWithDatabase({ keys, knex, config, clock });

  const router = new Router();
  authRoutes(router, { auth, authenticate });
  userRoutes(router, { admin, authenticate });
  jwksRoutes(router, { keys });
  revocationRoutes(router, {
    users: createUserRepository(knex),
    windowSeconds: keyRetentionSeconds(config.accessTokenTtlSeconds),
    clock,
  });

  const app = new Koa({ proxy: config.trustProxy, maxIpsCount: 1 });
  app.use(errorHandler());
  app.use(requestId(logger));
  app.use(accessLog());
  app.use(securityHeaders());
  app.use(async function noStore(ctx, next) {
    // Tokens and profiles must not sit in a browser's or a proxy's cache (RFC 6749 §5.1); the
    // JWKS route sets its own, cacheable, policy.
    ctx.set('Cache-Control', 'no-store');
    await next();
  });
  app.use(healthRoutes({ database: () => knex.raw('SELECT 1') }));
  app.use(jsonBody());
  app.use(router.routes());
  app.use(router.allowedMethods(allowedMethodsOptions()));
  return app;
}
