import type { Knex } from 'knex';
import { AppError, type Logger } from '@gatehouse/common';
import { createRepositories } from '../db/repositories';
import type { UserRecord } from '../db/repositories/user.repository';
import { signUpBody } from '../routes/auth/auth.schema';
import { guessablePasswordError, personalInputs } from './password-strength';
import type { PasswordHasher } from './passwords';

export interface AdminAccount {
  username: string;
  email: string;
  password: string;
}

/**
 * Creates a user with the roles `user` and `admin`, checked by sign-up's rules, and audits it.
 * Throws the tutorial's 400 when the username or email is taken.
 */
export async function createAdmin(
  knex: Knex,
  account: Partial<AdminAccount>,
  deps: { passwords: PasswordHasher; clock: () => Date; via: 'cli' | 'env' },
): Promise<UserRecord> {
  const input = signUpBody.parse(account);
  if (await deps.passwords.isTooGuessable(input.password, personalInputs(input))) throw guessablePasswordError();
  const passwordHash = await deps.passwords.hash(input.password);
  return createRepositories(knex).users.insertUser({
    username: input.username,
    email: input.email,
    passwordHash,
    roles: ['user', 'admin'],
    audit: { type: 'admin.created', details: { via: deps.via }, at: deps.clock() },
  });
}

/**
 * The first admin from `ADMIN_USERNAME`/`ADMIN_EMAIL`/`ADMIN_PASSWORD`: created at start when no
 * user has that username, and never touched again, so changing the password or roles later
 * through the API sticks across restarts.
 */
export async function ensureBootstrapAdmin(
  knex: Knex,
  account: AdminAccount,
  deps: { passwords: PasswordHasher; clock: () => Date; logger: Logger },
): Promise<void> {
  const existing = await createRepositories(knex).users.findUserByUsername(account.username);
  if (existing) {
    if (existing.roles.includes('admin')) deps.logger.info({ username: existing.username }, 'bootstrap admin exists; left unchanged');
    else deps.logger.warn({ username: existing.username }, 'ADMIN_USERNAME names an existing user who is not an admin; left unchanged');
    return;
  }
  try {
    const user = await createAdmin(knex, account, { ...deps, via: 'env' });
    deps.logger.info({ username: user.username, id: user.id }, 'bootstrap admin created');
  } catch (err) {
    // Another instance starting at the same moment created it first, or the email is taken.
    if (err instanceof AppError && (err.code === 'user.username_taken' || err.code === 'user.email_taken')) {
      deps.logger.warn({ username: account.username, reason: err.code }, 'bootstrap admin not created');
      return;
    }
    throw err;
  }
}
