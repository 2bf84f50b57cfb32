import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import type { Logger } from './logger';

/** `WORKERS`: a process count, or `auto` for one per core. */
export const workersVar = z
  .union([z.literal('auto'), z.coerce.number().int().min(1).max(64)])
  .default(1)
  .transform((value) => (value === 'auto' ? availableParallelism() : value));

/**
 * Runs `start` in `workers` processes sharing one listening port (node:cluster), or in this
 * process when `workers` is 1.
 *
 * @remarks The primary only supervises: it forwards SIGTERM/SIGINT to the workers (each shuts
 * down gracefully through `exitOnSignals`), exits 0 once all have exited, and replaces a
 * worker that dies on its own (exiting 1 when more than 3 per worker die within a minute). Stateless services only: every worker keeps its own caches
 * (signing keys, revocation feed, verified tokens).
 */
export function runClustered(workers: number, logger: Logger, start: () => Promise<void>): Promise<void> {
  if (workers <= 1 || !cluster.isPrimary) return start();

  let stopping = false;
  const recentDeaths: number[] = [];
  const fork = () => cluster.fork();
  for (let i = 0; i < workers; i += 1) fork();
  logger.info({ workers }, 'started worker processes');

  cluster.on('exit', (worker, code, signal) => {
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
      return;
    }
    // Workers that keep dying (a bad config, a crash at start) are not restarted forever:
    // the primary gives up with a failure, so the supervisor above it sees one.
    const now = Date.now();
    recentDeaths.push(now);
    while (recentDeaths.length > 0 && (recentDeaths[0] ?? now) < now - 60_000) recentDeaths.shift();
    if (recentDeaths.length > workers * 3) {
      logger.fatal({ deaths: recentDeaths.length }, 'workers keep dying; giving up');
      process.exit(1);
    }
    logger.error({ pid: worker.process.pid, code, signal }, 'worker died; starting another');
    setTimeout(fork, 1_000);
  });

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping worker processes');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  return Promise.resolve();
}
