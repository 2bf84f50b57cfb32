import type { Context, Middleware } from 'koa';
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
  type CounterConfiguration,
  type GaugeConfiguration,
} from 'prom-client';

export type { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * One app's Prometheus metrics: its own registry (never prom-client's global one, so a test
 * process can build many apps) and factories that register into it.
 */
export interface Metrics {
  readonly registry: Registry;
  /** A counter registered in this app's registry. */
  counter<L extends string = never>(config: Omit<CounterConfiguration<L>, 'registers'>): Counter<L>;
  /** A gauge registered in this app's registry; give it `collect` to read a value at scrape time. */
  gauge<L extends string = never>(config: Omit<GaugeConfiguration<L>, 'registers'>): Gauge<L>;
}

/** A new, empty set of metrics for one app. */
export function createMetrics(): Metrics {
  const registry = new Registry();
  return {
    registry,
    counter: (config) => new Counter({ ...config, registers: [registry] }),
    gauge: (config) => new Gauge({ ...config, registers: [registry] }),
  };
}

// The process's own metrics (CPU, memory, event loop lag, GC) are the same for every app in the
// process, and each collectDefaultMetrics() call starts its own event-loop monitor and GC
// observer; so they are collected once per process, into a registry of their own, and merged
// into every app's /metrics. It holds no config, pool or logger: nothing a test needs to reset.
let processRegistry: Registry | undefined;

function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** Upper bounds, in seconds: from a cached token check (well under 1 ms) to a slow bcrypt. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
/** Paths every service answers outside its router. */
const SERVICE_PATHS = ['/healthz', '/readyz', '/metrics'];

/** The `route` label of a request nothing matched: never its path, which the client chose. */
export const UNMATCHED_ROUTE = 'unmatched';

export interface HttpMetricsOptions {
  /**
   * The request's route pattern, or undefined when nothing matched. Read once the response has
   * been sent. By default: the pattern of the @koa/router route that handled it
   * (`/api/auth/users/:id/roles`), or one of `/healthz`, `/readyz`, `/metrics`.
   */
  routeOf?: (ctx: Context) => string | undefined;
}

/** The pattern @koa/router matched (`ctx._matchedRoute`), when it is a string pattern. */
export function matchedRoute(ctx: Context): string | undefined {
  // Set by @koa/router, which this package does not depend on; read without its types.
  const route: unknown = Reflect.get(ctx, '_matchedRoute');
  return typeof route === 'string' ? route : undefined;
}

function defaultRouteOf(ctx: Context): string | undefined {
  return matchedRoute(ctx) ?? (SERVICE_PATHS.includes(ctx.path) ? ctx.path : undefined);
}

/**
 * Counts and times every request by method, route pattern and status:
 * `http_request_duration_seconds`, and `http_requests_total` (the histogram's `_count` under
 * another name, copied when scraped). Measured when the response has been sent, like the
 * access log, so it covers error responses (written by `errorHandler()` further out) and
 * proxied ones (written outside Koa).
 *
 * @remarks Labels stay low-cardinality: the route is a pattern or `unmatched`, never a raw path
 * (which would carry ids and whatever a scanner tries); methods outside the usual seven are
 * `OTHER`.
 */
export function httpMetrics(metrics: Metrics, options: HttpMetricsOptions = {}): Middleware {
  const routeOf = options.routeOf ?? defaultRouteOf;
  const labelNames = ['method', 'route', 'status'] as const;
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from receiving an HTTP request to having sent its response.',
    labelNames,
    buckets: DURATION_BUCKETS,
    registers: [metrics.registry],
  });
  // The histogram's _count by another name, kept for dashboards that use it: copied at scrape
  // time, so that a request updates one metric, not two.
  metrics.counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered.',
    labelNames,
    async collect() {
      const { values } = await duration.get();
      this.reset();
      for (const { metricName, labels, value } of values) {
        if (metricName === 'http_request_duration_seconds_count') this.inc(labels, value);
      }
    },
  });

  return function measureRequest(ctx, next) {
    const started = process.hrtime.bigint();
    // `on`, not `once`: a response closes once, and is then dropped with its listeners.
    ctx.res.on('close', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const labels = {
        method: KNOWN_METHODS.has(ctx.method) ? ctx.method : 'OTHER',
        route: routeOf(ctx) ?? UNMATCHED_ROUTE,
        status: String(ctx.respond === false ? ctx.res.statusCode : ctx.status),
      };
      duration.observe(labels, seconds);
    });
    return next();
  };
}

/**
 * Answers `GET /metrics` in Prometheus's text format: this app's metrics and the process's
 * (`process_*`, `nodejs_*`).
 *
 * @remarks Unauthenticated, like `/healthz`: it must be reachable only by the scraper (the
 * gateway's port is public, so firewall its `/metrics` or block it at the load balancer).
 * With `WORKERS` > 1, each scrape is answered by whichever worker takes the connection.
 */
export function metricsRoute(metrics: Metrics): Middleware {
  return function serveMetrics(ctx, next) {
    if (ctx.path !== '/metrics' || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    return scrape(ctx);
  };
  async function scrape(ctx: Context): Promise<void> {
    // Merged on every scrape, so metrics registered after this route was built are included.
    const merged = Registry.merge([processMetrics(), metrics.registry]);
    ctx.body = await merged.metrics();
    ctx.set('Content-Type', merged.contentType);
    ctx.set('Cache-Control', 'no-store');
  }
}
