import Koa, { type Context, type Middleware } from 'koa';
import cors from '@koa/cors';
import {
  accessLog,
  createMetrics,
  errorHandler,
  healthRoutes,
  httpMetrics,
  metricsRoute,
  REQUEST_ID_HEADER,
  requestId,
  securityHeaders,
  type Logger,
} from '@gatehouse/common';
import { apiDocs } from './api-docs';
import type { GatewayConfig } from './config';
import { DEFAULT_CONSOLE_DIR, serveConsole } from './console';
import { proxyTo } from './proxy';
import { rateLimitPerIp } from './rate-limit';
import type { UpstreamPools } from './upstreams';

export type { GatewayConfig } from './config';
export type { UpstreamPools } from './upstreams';

/** What the gateway needs from its composition root. */
export interface GatewayDeps {
  config: GatewayConfig;
  logger: Logger;
  /**
   * The services' instances, with their connection pools and health checks; whoever makes them
   * closes them at shutdown (`closeUpstreamPools`).
   */
  pools: UpstreamPools;
  /** The built web console; console/dist by default (tests may point elsewhere). */
  consoleDir?: string;
}

// The seed tutorial's exact text: its clients check it to see that the API is up.
const WELCOME = Object.freeze({ message: 'Welcome to the Node.js JWT Authentication application.' });

/** True for `prefix` itself and anything below it (`/api/auth`, `/api/auth/x`, not `/api/authx`). */
function isUnder(path: string, prefix: string): boolean {
  return path.startsWith(prefix) && (path.length === prefix.length || path[prefix.length] === '/');
}

/**
 * Builds the gateway: CORS, health, the tutorial's welcome route, and `/api/auth/*` and
 * `/api/test/*` proxied to the auth and content services. A new Koa instance on every call.
 */
export function createApp(deps: GatewayDeps): Koa {
  const { config, logger } = deps;
  const pools = deps.pools;
  const allowedOrigins = new Set(config.corsOrigins);
  const timeoutMs = config.upstreamTimeoutMs;
  const toAuth = proxyTo({ pool: pools.auth, timeoutMs, logger });
  const toContent = proxyTo({ pool: pools.content, timeoutMs, logger });
  const metrics = createMetrics();
  const rateLimited = metrics.counter({ name: 'gatehouse_rate_limited_total', help: 'Requests to /api/auth refused by the per-IP limit.' });
  const limitAuth: Middleware =
    config.authRateLimitPerMinute > 0
      ? rateLimitPerIp({ limit: config.authRateLimitPerMinute, windowMs: 60_000, onLimited: () => rateLimited.inc() })
      : (_ctx, next) => next();

  const app = new Koa({ proxy: config.trustProxy, maxIpsCount: 1 });
  app.use(errorHandler());
  app.use(requestId(logger));
  app.use(accessLog());
  app.use(httpMetrics(metrics, { routeOf: gatewayRoute }));
  // Set before proxying, so proxied responses carry them too.
  app.use(securityHeaders());
  app.use(
    cors({
      // Echo the origin only when it is on the list; '' makes @koa/cors add no CORS header.
      origin: (ctx) => (allowedOrigins.has(ctx.get('Origin')) ? ctx.get('Origin') : ''),
      allowHeaders: ['x-access-token', 'Authorization', 'Content-Type', REQUEST_ID_HEADER],
      exposeHeaders: [REQUEST_ID_HEADER],
      maxAge: 600,
    }),
  );
  app.use(answerPreflight());
  // The OpenAPI document and its docs page; after securityHeaders(), whose CSP it replaces for
  // the page only.
  app.use(apiDocs());
  // Ready while at least one instance of each service is.
  app.use(healthRoutes({ auth: () => pools.auth.checkAll(), content: () => pools.content.checkAll() }));
  // The gateway's own metrics, for Prometheus; the services' /metrics are never proxied (they
  // are not under /api). Unauthenticated: keep the public from it at the load balancer.
  app.use(metricsRoute(metrics));
  app.use(function welcome(ctx, next) {
    if (ctx.path !== '/' || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    ctx.body = WELCOME;
  });
  // The web console; its responses carry their own CSP instead of the API's.
  app.use(serveConsole({ dir: deps.consoleDir ?? DEFAULT_CONSOLE_DIR }));
  app.use(function route(ctx, next) {
    const path = ctx.path;
    if (isUnder(path, '/api/auth')) return limitAuth(ctx, () => toAuth(ctx, next));
    if (isUnder(path, '/api/test')) return toContent(ctx, next);
    // Nothing else lives behind the gateway: errorHandler() answers the JSON 404.
    return next();
  });
  return app;
}

// The metrics' `route` label: one of a fixed set, never a raw path (ids, a scanner's guesses).
const ROUTE_PREFIXES = ['/api/auth', '/api/test', '/api/docs', '/console'];
const FIXED_ROUTES = new Set(['/', '/healthz', '/readyz', '/metrics', '/api/openapi.json']);

/** The route label of a gateway request: `/api/auth/*` and the like, or undefined (`unmatched`). */
function gatewayRoute(ctx: Context): string | undefined {
  const prefix = ROUTE_PREFIXES.find((candidate) => isUnder(ctx.path, candidate));
  if (prefix) return `${prefix}/*`;
  return FIXED_ROUTES.has(ctx.path) ? ctx.path : undefined;
}

/**
 * Answers every CORS preflight here, allowed origin or not, so none reaches a service.
 * @koa/cors answers allowed origins itself; the rest get a 204 without CORS headers, which the
 * browser reads as a refusal.
 */
function answerPreflight(): Middleware {
  return function preflight(ctx, next) {
    if (ctx.method !== 'OPTIONS' || !ctx.get('Access-Control-Request-Method')) return next();
    ctx.status = 204;
  };
}
