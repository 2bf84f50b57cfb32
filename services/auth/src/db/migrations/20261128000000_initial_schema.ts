import type { Knex } from 'knex';

// Users, roles and their link, and the signing keys. Usernames and emails are unique
// case-insensitively: the unique indexes are on lower(...), so the database, not a
// check-then-insert, decides a race between two sign-ups.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('roles', (table) => {
    table.integer('id').primary();
    table.text('name').notNullable().unique();
  });
  await knex('roles').insert([
    { id: 1, name: 'user' },
    { id: 2, name: 'moderator' },
    { id: 3, name: 'admin' },
  ]);

  await knex.schema.createTable('users', (table) => {
    table.increments('id').primary();
    table.text('username').notNullable();
    table.text('email').notNullable();
    table.text('password_hash').notNullable();
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw('CREATE UNIQUE INDEX users_username_lower_unique ON users (lower(username))');
  await knex.raw('CREATE UNIQUE INDEX users_email_lower_unique ON users (lower(email))');

  await knex.schema.createTable('user_roles', (table) => {
    table.integer('user_id').notNullable().references('users.id').onDelete('CASCADE');
    table.integer('role_id').notNullable().references('roles.id');
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.primary(['user_id', 'role_id']);
  });

  await knex.schema.createTable('signing_keys', (table) => {
    table.text('kid').primary();
    table.text('private_key_pem').notNullable();
    table.jsonb('public_jwk').notNullable();
    table.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    table.timestamp('retired_at', { useTz: true });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('signing_keys');
  await knex.schema.dropTable('user_roles');
  await knex.schema.dropTable('users');
  await knex.schema.dropTable('roles');
}
