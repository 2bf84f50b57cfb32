import Koa from 'koa';
import Router from '@koa/router';
import {
  accessLog,
  allowedMethodsOptions,
  createMetrics,
  errorHandler,
  healthRoutes,
  httpMetrics,
  metricsRoute,
  requestId,
  securityHeaders,
  type Logger,
} from '@gatehouse/common';
import { createTokenVerifier, requireAuth, type JwksClient, type RevocationFeedClient } from '@gatehouse/tokens';
import type { ContentConfig } from './config';
import { testRoutes } from './routes/test/test.routes';

export interface AppDeps {
  config: Pick<ContentConfig, 'issuer' | 'audience' | 'clockToleranceSeconds'> & Partial<Pick<ContentConfig, 'tokenCacheSize'>>;
  keys: JwksClient;
  /** The auth service's revocation feed, polled; checked on every token. */
  revocations: Pick<RevocationFeedClient, 'isRevoked' | 'loaded' | 'refresh'>;
  logger: Logger;
  clock?: () => Date;
}

/**
 * Builds the content service's Koa app. It verifies tokens itself from the cached JWKS and
 * the polled revocation feed: no database and no call to auth per request.
 */
export function createApp(deps: AppDeps): Koa {
  const { config, keys, revocations, logger } = deps;
  const clock = deps.clock ?? (() => new Date());
  const verify = createTokenVerifier({
    keys,
    issuer: config.issuer,
    audience: config.audience,
    clockToleranceSeconds: config.clockToleranceSeconds,
    nowSeconds: () => Math.floor(clock().getTime() / 1000),
    isRevoked: (claims) => revocations.isRevoked(claims),
    cacheSize: config.tokenCacheSize ?? 0,
  });

  const router = new Router();
  testRoutes(router, { authenticate: requireAuth({ verify }) });

  const metrics = createMetrics();
  metrics.counter({
    name: 'gatehouse_jwks_refresh_total',
    help: "Fetches of the auth service's signing keys (JWKS), by outcome: ok or failed.",
    labelNames: ['outcome'],
    // The client counts its fetches, also those made before this app existed (main warms the
    // cache first); the counter shows its tallies.
    collect() {
      const { ok, failed } = keys.refreshes;
      this.reset();
      this.inc({ outcome: 'ok' }, ok);
      this.inc({ outcome: 'failed' }, failed);
    },
  });

  const app = new Koa();
  app.use(errorHandler());
  app.use(requestId(logger));
  app.use(accessLog());
  app.use(httpMetrics(metrics));
  app.use(securityHeaders());
  // Ready once the signing keys and the revocation feed have been loaded once; while auth is
  // down, the cached copies keep it ready.
  app.use(
    healthRoutes({
      signingKeys: async () => (keys.size > 0 ? undefined : keys.refresh()),
      revocations: async () => (revocations.loaded ? undefined : revocations.refresh()),
    }),
  );
  app.use(metricsRoute(metrics));
  app.use(router.routes());
  app.use(router.allowedMethods(allowedMethodsOptions()));
  return app;
}
