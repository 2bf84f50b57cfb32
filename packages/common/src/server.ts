import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type Koa from 'koa';
import type { Middleware } from 'koa';
import type { Logger } from './logger';

/** Named readiness checks; each resolves when its dependency is reachable, throws when not. */
export type ReadinessChecks = Record<string, () => Promise<unknown>>;

/**
 * `GET /healthz` answers 200 while the process runs; `GET /readyz` runs every readiness check
 * and answers 200 when all pass, 503 naming the ones that failed.
 */
export function healthRoutes(checks: ReadinessChecks = {}): Middleware {
  return async function health(ctx, next) {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === '/healthz') {
      ctx.body = { status: 'ok' };
      return;
    }
    if (ctx.path !== '/readyz') return next();
    const results: Record<string, 'ok' | 'failing'> = {};
    await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        try {
          await check();
          results[name] = 'ok';
        } catch (err) {
          ctx.state.log.warn({ err, check: name }, 'readiness check failed');
          results[name] = 'failing';
        }
      }),
    );
    const ready = Object.values(results).every((result) => result === 'ok');
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'unready', checks: results };
  };
}

export interface RunningServer {
  server: http.Server;
  /** `http://127.0.0.1:<port>` (or the bound host). */
  url: string;
  port: number;
  /** Stops accepting, lets in-flight requests finish (up to `graceMs`), then resolves. */
  close(graceMs?: number): Promise<void>;
}

/**
 * Listens with `app` on `port` (0 = any free port) and resolves once bound.
 *
 * @remarks keep-alive sockets are closed when idle at shutdown and forcibly after the grace
 * period, so `close()` never hangs on a client that keeps a connection open.
 */
export async function startServer(
  app: Koa,
  options: { port: number; host?: string; logger?: Logger },
): Promise<RunningServer> {
  const server = http.createServer(app.callback());
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

  return {
    server,
    port,
    url: `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${port}`,
    close(graceMs = 10_000) {
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), graceMs);
        force.unref();
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      });
    },
  };
}

/**
 * Runs a service until SIGTERM or SIGINT: then stops accepting, finishes in-flight requests,
 * runs `onShutdown` (close pools) and exits 0. Used by every `main.ts`.
 */
export function exitOnSignals(running: RunningServer, logger: Logger, onShutdown: () => Promise<void> = async () => {}): void {
  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    try {
      await running.close();
      await onShutdown();
      logger.info('stopped');
      process.exit(0);
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
