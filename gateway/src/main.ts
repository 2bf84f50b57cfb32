import { createLogger, exitOnSignals, runClustered, startServer, type Logger } from '@gatehouse/common';
import { createApp } from './app';
import { loadConfig, type GatewayConfig } from './config';
import { closeUpstreamPools, createUpstreamPools } from './upstreams';

/** Composition root: reads the environment, wires the real dependencies and listens. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ service: 'gateway', level: config.logLevel });
  await runClustered(config.workers, logger, () => serve(config, logger));
}

async function serve(config: GatewayConfig, logger: Logger): Promise<void> {
  const pools = createUpstreamPools(config, logger);
  const app = createApp({ config, logger, pools });
  const running = await startServer(app, { port: config.port, host: config.host, logger });
  logger.info({ url: running.url, auth: config.authUrls, content: config.contentUrls }, 'listening');
  // In-flight proxied requests finish during close(); only then drop the pooled sockets.
  exitOnSignals(running, logger, async () => closeUpstreamPools(pools));
}

main().catch((err: unknown) => {
  // The logger may not exist yet (invalid config), so write the reason where it will be seen.
  process.stderr.write(`gateway failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
