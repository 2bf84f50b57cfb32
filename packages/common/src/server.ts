import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type Koa from 'koa';
import type { Context, Middleware } from 'koa';
import type { Logger } from './logger';
import { requestLog } from './middleware';

/** Named readiness checks; each resolves when its dependency is reachable, throws when not. */
export type ReadinessChecks = Record<string, () => Promise<unknown>>;

/**
 * `GET /healthz` answers 200 while the process runs; `GET /readyz` runs every readiness check
 * and answers 200 when all pass, 503 naming the ones that failed.
 */
export function healthRoutes(checks: ReadinessChecks = {}): Middleware {
  return function health(ctx, next) {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === '/healthz') {
      ctx.body = { status: 'ok' };
      return undefined;
    }
    if (ctx.path !== '/readyz') return next();
    return answerReadiness(ctx);
  };
  async function answerReadiness(ctx: Context): Promise<void> {
    const results: Record<string, 'ok' | 'failing'> = {};
    await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        try {
          await check();
          results[name] = 'ok';
        } catch (err) {
          requestLog(ctx)?.warn({ err, check: name }, 'readiness check failed');
          results[name] = 'failing';
        }
      }),
    );
    const ready = Object.values(results).every((result) => result === 'ok');
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'unready', checks: results };
  }
}

/** How long a service may take to stop after SIGTERM before it exits anyway. */
export const SHUTDOWN_TIMEOUT_MS = 10_000;
// Of that, what is kept for closing pools and workers once the requests are done.
const CLEANUP_RESERVE_MS = 2_000;
// Once shutdown has begun, how long a kept-alive connection may sit idle before it is closed.
const DRAIN_IDLE_MS = 500;

export interface RunningServer {
  server: http.Server;
  /** `http://127.0.0.1:<port>` (or the bound host). */
  url: string;
  port: number;
  /**
   * Stops accepting connections, answers the requests already sent (each with
   * `Connection: close`), closes the connections as they fall idle, and resolves once none is
   * left. Connections still busy after `graceMs` are cut; `forced` says whether any were.
   */
  close(graceMs?: number): Promise<{ forced: boolean }>;
}

/**
 * Node's `http.ServerResponse` with one change: once `isDraining()`, every response says
 * `Connection: close`, also one whose handler set keep-alive itself (a proxied answer). Every
 * response writes its head through `writeHead`, also one whose head is implicit (`end()`).
 *
 * @remarks Inherits the way Node's own http classes do (a constructor function and a
 * prototype), not with `class ... extends http.ServerResponse`: with such a class, even an
 * empty one, a Koa app with no middleware used about 28 µs of CPU per request instead of 23
 * (22 % more, in an A/B with the server on one core and the load on the other), on every
 * request of every service. `http.ServerResponse` is such a function itself, so it can be
 * applied to `this`.
 */
function shutdownAwareResponse(isDraining: () => boolean): typeof http.ServerResponse {
  function ShutdownAwareResponse(this: http.ServerResponse, req: http.IncomingMessage, options?: unknown): void {
    Reflect.apply(http.ServerResponse, this, [req, options]);
  }
  const { writeHead } = http.ServerResponse.prototype;
  Object.setPrototypeOf(ShutdownAwareResponse, http.ServerResponse);
  ShutdownAwareResponse.prototype = Object.create(http.ServerResponse.prototype, {
    constructor: { value: ShutdownAwareResponse, writable: true, configurable: true },
    writeHead: {
      value: function writeHeadUnlessDraining(this: http.ServerResponse, ...args: Parameters<typeof writeHead>) {
        if (isDraining() && !this.headersSent) this.setHeader('connection', 'close');
        return writeHead.apply(this, args);
      },
      writable: true,
      configurable: true,
    },
  });
  // A constructor function is what Node calls with `new`; TypeScript knows only classes as such.
  return ShutdownAwareResponse as unknown as typeof http.ServerResponse;
}

/**
 * Listens with `app` on `port` (0 = any free port) and resolves once bound.
 *
 * @remarks Shutdown does not reset a request a client has sent. Node's `http.Server#close()`
 * destroys every idle keep-alive connection at once; but a connection is idle to the server
 * until it has read the next request, so a client that has just written one on it gets
 * ECONNRESET (issue 5, item 3, measured in `test/e2e/shutdown.e2e.test.ts`). So `close()` stops
 * the listener only, sends `Connection: close` on every response from then on (also on a
 * proxied response whose upstream said keep-alive), and closes a connection only after it has
 * been idle for a moment: by then its client has either sent its next request, or is not
 * about to.
 */
export async function startServer(
  app: Koa,
  options: { port: number; host?: string; logger?: Logger },
): Promise<RunningServer> {
  let draining = false;
  const ServerResponse = shutdownAwareResponse(() => draining);
  const server = http.createServer({ ServerResponse }, app.callback());
  // Behind the gateway's keep-alive agent: keep idle sockets longer than the agent does, so the
  // server never closes one the gateway is just about to reuse.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => {
      server.off('error', reject);
      // Without a listener, a later server error (EMFILE on accept) would crash the process.
      server.on('error', (err) => options.logger?.error({ err }, 'server error'));
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;

  let closing: Promise<{ forced: boolean }> | undefined;
  return {
    server,
    port,
    url: `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${port}`,
    close(graceMs = SHUTDOWN_TIMEOUT_MS - CLEANUP_RESERVE_MS) {
      closing ??= new Promise((resolve) => {
        draining = true;
        // A connection whose answer went out before shutdown, with keep-alive, closes once idle.
        server.keepAliveTimeout = DRAIN_IDLE_MS;
        let forced = false;
        const sweep = setTimeout(() => server.closeIdleConnections(), DRAIN_IDLE_MS);
        const force = setTimeout(() => {
          forced = true;
          server.closeAllConnections();
        }, graceMs);
        sweep.unref();
        force.unref();
        // net's close, not http's: see @remarks. Calls back once the last connection has closed.
        net.Server.prototype.close.call(server, () => {
          clearTimeout(sweep);
          clearTimeout(force);
          resolve({ forced });
        });
      });
      return closing;
    },
  };
}

/**
 * Runs a service until SIGTERM or SIGINT: then stops accepting, finishes in-flight requests,
 * runs `onShutdown` (close pools) and exits: 0 when every request was answered, 1 when some
 * had to be cut or shutdown took longer than `timeoutMs` (then the process exits anyway).
 * Used by every `main.ts`.
 *
 * @remarks A second SIGINT or SIGTERM during shutdown gets Node's default handling and ends
 * the process at once (Ctrl-C twice).
 */
export function exitOnSignals(
  running: RunningServer,
  logger: Logger,
  onShutdown: () => Promise<void> = async () => {},
  options: { timeoutMs?: number } = {},
): void {
  const timeoutMs = options.timeoutMs ?? SHUTDOWN_TIMEOUT_MS;
  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // Referenced, so that a cleanup stuck on a promise nothing will settle cannot let the
    // event loop run dry and the process end with 0 as if all had gone well.
    setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, timeoutMs);
    try {
      const { forced } = await running.close(Math.max(timeoutMs - CLEANUP_RESERVE_MS, timeoutMs / 2));
      if (forced) logger.warn('requests still under way at the shutdown deadline were cut');
      await onShutdown();
      logger.info('stopped');
      process.exit(forced ? 1 : 0);
    } catch (err) {
      logger.error({ err }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

/**
 * Runs `task` every `intervalMs` until the returned function is called, without keeping the
 * process alive. A rejection is dropped: the task logs its own failures.
 */
export function repeatEvery(intervalMs: number, task: () => Promise<unknown>): () => void {
  const timer = setInterval(() => void task().catch(() => undefined), intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
