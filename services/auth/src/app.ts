import Koa from 'koa';
import Router from '@koa/router';
import type { Knex } from 'knex';
import {
  accessLog,
  allowedMethodsOptions,
  createMetrics,
  errorHandler,
  healthRoutes,
  httpMetrics,
  jsonBody,
  metricsRoute,
  requestId,
  securityHeaders,
  type Logger,
  type Metrics,
} from '@gatehouse/common';
import type { AuthConfig } from './config';
import { createUserRepository } from './db/repositories/user.repository';
import { authRoutes } from './routes/auth/auth.routes';
import { authenticateWithDatabase } from './routes/authenticate';
import { revocationRoutes } from './routes/internal/revocations.routes';
import { jwksRoutes } from './routes/jwks/jwks.routes';
import { userRoutes } from './routes/users/users.routes';
import { createAdminService } from './services/admin.service';
import { createAuthService, REFRESH_OUTCOMES, SIGNIN_OUTCOMES, type AuthOutcomes } from './services/auth.service';
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
  const metrics = createMetrics();
  const auth = createAuthService({
    knex,
    passwords: createPasswordHasher(config.bcryptCost, deps.bcrypt),
    throttle: createSigninThrottle(knex, config.signinThrottle),
    keys,
    tokens: config,
    clock,
    outcomes: outcomeCounters(metrics),
  });
  countPoolConnections(metrics, knex);
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
  app.use(httpMetrics(metrics));
  app.use(securityHeaders());
  app.use(async function noStore(ctx, next) {
    // Tokens and profiles must not sit in a browser's or a proxy's cache (RFC 6749 §5.1); the
    // JWKS route sets its own, cacheable, policy.
    ctx.set('Cache-Control', 'no-store');
    await next();
  });
  app.use(healthRoutes({ database: () => knex.raw('SELECT 1') }));
  app.use(metricsRoute(metrics));
  app.use(jsonBody());
  app.use(router.routes());
  app.use(router.allowedMethods(allowedMethodsOptions()));
  return app;
}

/** `gatehouse_signin_total` and `gatehouse_refresh_total` by outcome, every outcome from 0. */
function outcomeCounters(metrics: Metrics): AuthOutcomes {
  const signins = metrics.counter({ name: 'gatehouse_signin_total', help: 'Sign-ins, by outcome.', labelNames: ['outcome'] });
  const refreshes = metrics.counter({
    name: 'gatehouse_refresh_total',
    help: 'Refresh-token presentations, by outcome; "reused" is a reuse detection, which ends the session.',
    labelNames: ['outcome'],
  });
  for (const outcome of SIGNIN_OUTCOMES) signins.inc({ outcome }, 0);
  for (const outcome of REFRESH_OUTCOMES) refreshes.inc({ outcome }, 0);
  return {
    signin: (outcome) => signins.inc({ outcome }),
    refresh: (outcome) => refreshes.inc({ outcome }),
  };
}

/** What the metrics read of knex's connection pool (tarn). */
interface PoolStats {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
}

function isPoolStats(pool: unknown): pool is PoolStats {
  return typeof pool === 'object' && pool !== null && 'numUsed' in pool && 'numFree' in pool && 'numPendingAcquires' in pool;
}

/**
 * `gatehouse_db_pool_connections{state="used|free|pending"}`, read from knex's pool at each
 * scrape. `pending` counts requests waiting for a connection: above 0 for long, the pool
 * (`DB_POOL_MAX`) or the database is too small. The embedded database (PGlite) has a pool
 * of one connection.
 */
function countPoolConnections(metrics: Metrics, knex: Knex): void {
  metrics.gauge({
    name: 'gatehouse_db_pool_connections',
    help: 'Database connections of this process by state: used, free, and pending (requests waiting for one).',
    labelNames: ['state'],
    collect() {
      // knex types its client as any; and the pool exists only while knex is open.
      const pool: unknown = knex.client.pool;
      this.reset();
      if (!isPoolStats(pool)) return;
      this.set({ state: 'used' }, pool.numUsed());
      this.set({ state: 'free' }, pool.numFree());
      this.set({ state: 'pending' }, pool.numPendingAcquires());
    },
  });
}
