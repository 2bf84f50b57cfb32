import { createLogger, exitOnSignals, startServer } from '@gatehouse/common';
import { createJwksClient } from '@gatehouse/tokens';
import { createApp } from './app';
import { loadConfig } from './config';

// Composition root: the only place that reads the environment and listens.
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ service: 'content', level: config.logLevel });
  const keys = createJwksClient({ url: config.jwksUrl, logger, minRefetchIntervalMs: config.jwksMinRefetchMs });
  // Warm the cache; when auth is not up yet, the first token's unknown kid fetches again.
  await keys.refresh().catch(() => undefined);
  const app = createApp({ config, keys, logger });
  const running = await startServer(app, { port: config.port, host: config.host, logger });
  logger.info({ url: running.url, jwks: config.jwksUrl }, 'content listening');
  exitOnSignals(running, logger);
}

main().catch((err: unknown) => {
  process.stderr.write(`content failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
