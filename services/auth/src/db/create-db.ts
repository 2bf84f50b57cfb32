import knexFactory, { type Knex } from 'knex';
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

  // Loaded only here: on PostgreSQL, PGlite would be about 1.5 MiB of heap for nothing.
  const ClientPgLite = require('knex-pglite') as typeof import('knex-pglite');
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

// Held by the instance that migrates; the others wait for it (see migrateDb).
const MIGRATIONS_LOCK = "hashtext('gatehouse.migrations')";
const MIGRATIONS_LOCK_POLL_MS = 100;
const MIGRATIONS_LOCK_WAIT_MS = 5 * 60_000;

/**
 * Brings the schema up to date. Safe when several instances start at once on one PostgreSQL:
 * they take turns on an advisory lock, so one migrates and the others find nothing left to do.
 *
 * @remarks knex's own lock does not serialise them: a second instance fails with a duplicate
 * `knex_migrations` table, or with "Migration table is already locked", instead of waiting.
 */
export async function migrateDb(knex: Knex, logger?: Logger): Promise<void> {
  const migrate = () => knex.migrate.latest({ migrationSource });
  const [, applied] = knex.client.config.client === 'pg' ? await whileHoldingMigrationsLock(knex, migrate, logger) : await migrate();
  if (applied.length > 0) logger?.info({ migrations: applied }, 'database migrated');
}

/** Runs `work` while this process holds the session-level migrations lock, waiting for it. */
async function whileHoldingMigrationsLock<T>(knex: Knex, work: () => Promise<T>, logger?: Logger): Promise<T> {
  // A session lock lives on one connection: hold one for the duration (migrations use others).
  const connection: unknown = await knex.client.acquireConnection();
  try {
    const deadline = Date.now() + MIGRATIONS_LOCK_WAIT_MS;
    let waiting = false;
    // pg_try_advisory_lock in a loop rather than pg_advisory_lock: each try returns at once, so
    // the statement timeout never cuts a long wait.
    for (;;) {
      const result = await knex.raw(`SELECT pg_try_advisory_lock(${MIGRATIONS_LOCK}) AS locked`).connection(connection);
      if ((result.rows as { locked: boolean }[])[0]?.locked) break;
      if (Date.now() > deadline) throw new Error('another instance held the migrations lock for 5 minutes');
      if (!waiting) logger?.info('another instance is migrating the database; waiting for it');
      waiting = true;
      await new Promise((resolve) => setTimeout(resolve, MIGRATIONS_LOCK_POLL_MS));
    }
    try {
      return await work();
    } finally {
      await knex.raw(`SELECT pg_advisory_unlock(${MIGRATIONS_LOCK})`).connection(connection);
    }
  } finally {
    await knex.client.releaseConnection(connection);
  }
}
