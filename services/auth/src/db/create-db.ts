import fs from 'node:fs';
import path from 'node:path';
import knexFactory, { type Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import type { Logger } from '@gatehouse/common';
import { migrationSource } from './migrations';

export interface DbConfig {
  databaseUrl?: string;
  dataDir: string;
  poolMax: number;
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
export function createDb(config: DbConfig): Db {
  if (config.databaseUrl) {
    const knex = knexFactory({
      client: 'pg',
      connection: { connectionString: config.databaseUrl, application_name: 'gatehouse-auth' },
      pool: { min: 0, max: config.poolMax },
      acquireConnectionTimeout: 10_000,
    });
    return { knex, kind: 'postgres', close: () => knex.destroy() };
  }

  const inMemory = config.dataDir.startsWith('memory://');
  const release = inMemory ? () => {} : lockDataDir(config.dataDir);
  const knex = knexFactory({
    client: ClientPgLite,
    dialect: 'postgres',
    connection: inMemory ? {} : { filename: config.dataDir },
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

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the data directory's lock file for this process; returns the release function. */
function lockDataDir(dataDir: string): () => void {
  fs.mkdirSync(dataDir, { recursive: true });
  const lockFile = path.join(path.dirname(dataDir), `${path.basename(dataDir)}.lock`);
  for (;;) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(fs.readFileSync(lockFile, 'utf8').trim());
      if (Number.isInteger(holder) && holder !== process.pid && isRunning(holder)) {
        throw new Error(
          `The embedded database at ${dataDir} is in use by process ${holder}. ` +
            'Stop the running stack first (Ctrl-C on `npm start`), or use a PostgreSQL server with DATABASE_URL.',
        );
      }
      fs.rmSync(lockFile, { force: true }); // left by a process that is gone
    }
  }
  return () => fs.rmSync(lockFile, { force: true });
}

/** Brings the schema up to date; safe to run from several instances at once (knex's lock). */
export async function migrateDb(knex: Knex, logger?: Logger): Promise<void> {
  const [, applied] = await knex.migrate.latest({ migrationSource });
  if (applied.length > 0) logger?.info({ migrations: applied }, 'database migrated');
}
