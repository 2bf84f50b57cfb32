import { createLogger, exitOnSignals, runClustered, startServer, type Logger } from '@gatehouse/common';
import { createJwksClient, createRevocationFeedClient } from '@gatehouse/tokens';
import { createApp } from './app';
import { loadConfig, type ContentConfig } from './config';

// Composition root: the only place that reads the environment and listens.
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ service: 'content', level: config.logLevel });
  await runClustered(config.workers, logger, () => serve(config, logger));
}

async function serve(config: ContentConfig, logger: Logger): Promise<void> {
  const keys = createJwksClient({ url: config.jwksUrls, logger, minRefetchIntervalMs: config.jwksMinRefetchMs });
  const revocations = createRevocationFeedClient({ url: config.revocationsUrls, logger });
  // Warm both caches; when auth is not up yet, the pollers and the first unknown kid try again.
  await Promise.all([keys.refresh().catch(() => undefined), revocations.refresh().catch(() => undefined)]);
  const stopPolling = revocations.start(config.revocationPollMs);
  const stopRefreshing = keys.start(config.jwksRefreshMs);
  const app = createApp({ config, keys, revocations, logger });
  const running = await startServer(app, { port: config.port, host: config.host, logger });
  logger.info({ url: running.url, jwks: config.jwksUrls }, 'content listening');
  exitOnSignals(running, logger, async () => {
    stopPolling();
    stopRefreshing();
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`content failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
