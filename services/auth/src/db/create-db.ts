import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import type { Logger } from '@gatehouse/common';
import { lockDataDir } from './data-dir-lock';
import { migrationSource } from './migrations';

export interface DbConfig {
  databaseUrl?: string;
  dataDir: string;
  poolMax: number;
  /** How long a request waits for a pooled connection (and a new connection to open). */
  acquireTimeoutMs?: number;
  /** PostgreSQL cancels a statement that runs longer. */
  statementTimeoutMs?: number;
}

export interface Db {
  knex: Knex;
  kind: 'postgres' | 'pglite';
  /** Closes the pool (and releases the embedded database's lock). */
  close(): Promise<void>;
}

/**
 * Opens the database: PostgreSQL through `pg` when `databaseUrl` is set, else the embedded
 * PGlite under `dataDir`.
 *
 * @remarks PGlite is one process's database: a second process opening the same directory would
 * corrupt it. A pid lock file next to the data makes a second opener (say, the CLI while
 * `npm start` runs) fail with a message saying what to do.
 */
export function createDb(config: DbConfig, logger?: Logger): Db {
  // knex prints its own warnings with console.log; send them to our logger, or nowhere.
  const log = {
    warn: (message: unknown) => logger?.warn({ knex: message }, 'knex warning'),
    error: (message: unknown) => logger?.error({ knex: message }, 'knex error'),
    deprecate: (message: unknown) => logger?.warn({ knex: message }, 'knex deprecation'),
    debug: (message: unknown) => logger?.debug({ knex: message }, 'knex debug'),
  };
  if (config.databaseUrl) {
    // Bounded waits everywhere, so that with the database down or stuck a request fails with
    // a 503 in seconds instead of hanging, and the pool recovers by itself when it is back.
    const acquireTimeoutMs = config.acquireTimeoutMs ?? 3_000;
    const knex = knexFactory({
      client: 'pg',
      connection: {
        connectionString: config.databaseUrl,
        application_name: 'gatehouse-auth',
        connectionTimeoutMillis: acquireTimeoutMs,
        statement_timeout: config.statementTimeoutMs ?? 5_000,
      },
      pool: { min: 0, max: config.poolMax },
      acquireConnectionTimeout: acquireTimeoutMs,
      log,
    });
    return { knex, kind: 'postgres', close: () => knex.destroy() };
  }

  const inMemory = config.dataDir.startsWith('memory://');
  const release = inMemory ? () => {} : lockDataDir(config.dataDir);
  const knex = knexFactory({
    client: ClientPgLite,
    dialect: 'postgres',
    connection: inMemory ? {} : { filename: config.dataDir },
    log,
  });
  return {
    knex,
    kind: 'pglite',
    close: async () => {
      try {
        await knex.destroy();
      } finally {
        release();
      }
    },
  };
}

/** Brings the schema up to date; safe to run from several instances at once (knex's lock). */
export async function migrateDb(knex: Knex, logger?: Logger): Promise<void> {
  const [, applied] = await knex.migrate.latest({ migrationSource });
  if (applied.length > 0) logger?.info({ migrations: applied }, 'database migrated');
}
