import type { Knex } from 'knex';
import { createEventRepository } from './event.repository';
import { createRefreshTokenRepository } from './refresh-token.repository';
import { createUserRepository } from './user.repository';

/**
 * Every repository over one handle. Services call it with the pool for single statements, and
 * inside `knex.transaction()` with the transaction when several changes must commit together.
 */
export function createRepositories(knex: Knex) {
  return {
    users: createUserRepository(knex),
    refreshTokens: createRefreshTokenRepository(knex),
    events: createEventRepository(knex),
  };
}

export type Repositories = ReturnType<typeof createRepositories>;
