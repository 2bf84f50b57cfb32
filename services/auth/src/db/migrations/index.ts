import type { Knex } from 'knex';
import * as initialSchema from './20261128000000_initial_schema';
import * as tokenLifecycle from './20261128010000_token_lifecycle';

// Migrations are listed here rather than read from the directory, so they run the same under
// tsx, jest and any bundler. Append only; never edit a migration that has shipped.
const MIGRATIONS: Record<string, Knex.Migration> = {
  '20261128000000_initial_schema': initialSchema,
  '20261128010000_token_lifecycle': tokenLifecycle,
};

/** Knex migration source over the list above. */
export const migrationSource: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(MIGRATIONS),
  getMigrationName: (name) => name,
  getMigration: async (name) => {
    const migration = MIGRATIONS[name];
    if (!migration) throw new Error(`unknown migration ${name}`);
    return migration;
  },
};
