import { createLogger, exitOnSignals, repeatEvery, startServer } from '@gatehouse/common';
import { createApp } from './app';
import { loadConfig } from './config';
import { createDb, migrateDb } from './db/create-db';
import { ensureBootstrapAdmin } from './services/bootstrap-admin';
import { createBcryptPool, createPasswordHasher } from './services/passwords';
import { createSigninThrottle } from './services/signin-throttle';
import { createKeyStore, ensureSigningKey } from './services/signing-keys';

// Composition root: the only place that reads the environment, opens the pool and listens.
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger({ service: 'auth', level: config.logLevel });
  const clock = () => new Date();
  const db = createDb(config, logger);
  logger.info(
    db.kind === 'postgres'
      ? { database: 'postgres' }
      : { database: 'embedded (PGlite)', dataDir: config.dataDir },
    db.kind === 'postgres' ? 'using PostgreSQL from DATABASE_URL' : 'no DATABASE_URL: using the embedded PostgreSQL (PGlite)',
  );
  await migrateDb(db.knex, logger);
  const bcrypt = config.bcryptThreads > 0 ? createBcryptPool(config.bcryptThreads, { maxWaitMs: config.bcryptMaxWaitMs }) : undefined;
  if (config.bootstrapAdmin) {
    const passwords = createPasswordHasher(config.bcryptCost, bcrypt);
    await ensureBootstrapAdmin(db.knex, config.bootstrapAdmin, { passwords, clock, logger });
  }
  await ensureSigningKey(db.knex, { logger, clock });
  const keys = await createKeyStore(db.knex, { logger, clock, accessTokenTtlSeconds: config.accessTokenTtlSeconds });
  const stopReloading = keys.startReloading(config.signingKeyReloadMs);
  const app = createApp({ config, knex: db.knex, keys, logger, clock, bcrypt });
  // Expired sign-in counters are dropped now and then; any instance may do it.
  const throttle = createSigninThrottle(db.knex, config.signinThrottle);
  const stopPruning = repeatEvery(10 * 60_000, () =>
    throttle.prune(clock()).catch((err: unknown) => logger.warn({ err }, 'could not prune sign-in counters')),
  );
  const running = await startServer(app, { port: config.port, host: config.host, logger });
  logger.info({ url: running.url }, 'auth listening');
  exitOnSignals(running, logger, async () => {
    stopReloading();
    stopPruning();
    await bcrypt?.close();
    await db.close();
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`auth failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
