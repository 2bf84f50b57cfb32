import type { Knex } from 'knex';

// Sessions, revocation and the audit log (issue 3).
//
// - users.disabled_at: a disabled user cannot sign in or refresh.
// - users.token_version: stamped into every access token as `ver`. Changing a user's roles,
//   disabling them or signing them out everywhere bumps it, and tokens with an older `ver`
//   stop verifying; users.tokens_revoked_at says when, so the revocation feed only lists
//   bumps younger than one access-token lifetime.
// - refresh_tokens: one row per issued refresh token, hash only, grouped in families (one
//   family per sign-in); `used_at` + `replaced_by` record rotation, `revoked_at` ends the family.
// - signin_throttle: failed sign-in counters for brute-force protection.
// - auth_events: the audit log; never a password or token.
// - signing_keys.activates_at: a rotated key is published before it signs, so verifiers that
//   refetch the JWKS on an unknown kid already find it.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('signing_keys', (table) => {
    table.timestamp('activates_at', { useTz: true });
  });
  await knex('signing_keys').update({ activates_at: knex.ref('created_at') });
  await knex.schema.alterTable('signing_keys', (table) => {
    table.dropNullable('activates_at');
  });

  await knex.schema.alterTable('users', (table) => {
    table.timestamp('disabled_at', { useTz: true });
    table.integer('token_version').notNullable().defaultTo(0);
    table.timestamp('tokens_revoked_at', { useTz: true });
  });
  await knex.raw('CREATE INDEX users_tokens_revoked_at ON users (tokens_revoked_at) WHERE tokens_revoked_at IS NOT NULL');

  await knex.schema.createTable('refresh_tokens', (table) => {
    table.bigIncrements('id').primary();
    table.text('token_hash').notNullable().unique();
    table.uuid('family_id').notNullable();
    table.integer('user_id').notNullable().references('users.id').onDelete('CASCADE');
    table.timestamp('created_at', { useTz: true }).notNullable();
    table.timestamp('expires_at', { useTz: true }).notNullable();
    table.timestamp('used_at', { useTz: true });
    table.bigInteger('replaced_by').references('refresh_tokens.id').onDelete('SET NULL');
    // The successor token, encrypted with a key derived from this (parent) token, kept only
    // when the reuse interval is on: a second presentation within it returns the same successor.
    table.text('successor_sealed');
    table.timestamp('revoked_at', { useTz: true });
    table.text('revoked_reason');
    table.text('client_ip');
    table.text('user_agent');
    table.index(['family_id']);
    table.index(['user_id']);
  });

  // Failed sign-ins per key (account, account+IP, IP), shared by every auth instance.
  await knex.schema.createTable('signin_throttle', (table) => {
    table.text('key').primary();
    table.integer('failures').notNullable();
    // Attempts whose password is being checked right now, so a burst is held to the threshold.
    table.integer('pending').notNullable().defaultTo(0);
    table.timestamp('window_started_at', { useTz: true }).notNullable();
    table.timestamp('locked_until', { useTz: true });
  });

  await knex.schema.createTable('auth_events', (table) => {
    table.bigIncrements('id').primary();
    table.text('type').notNullable();
    table.integer('user_id').references('users.id').onDelete('SET NULL');
    table.integer('actor_id').references('users.id').onDelete('SET NULL');
    table.text('ip');
    table.text('user_agent');
    table.jsonb('details');
    table.timestamp('created_at', { useTz: true }).notNullable();
    table.index(['user_id', 'id']);
    table.index(['type', 'id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('auth_events');
  await knex.schema.dropTable('signin_throttle');
  await knex.schema.dropTable('refresh_tokens');
  await knex.schema.alterTable('signing_keys', (table) => {
    table.dropColumn('activates_at');
  });
  await knex.raw('DROP INDEX users_tokens_revoked_at');
  await knex.schema.alterTable('users', (table) => {
    table.dropColumn('tokens_revoked_at');
    table.dropColumn('token_version');
    table.dropColumn('disabled_at');
  });
}
