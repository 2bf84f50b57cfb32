import type { Knex } from 'knex';
import { UniqueViolationError } from 'objection';
import { BadRequestError } from '@gatehouse/common';
import { ROLES, type RoleName } from '@gatehouse/tokens';
import { UserModel } from '../models/user.model';

export interface UserRecord {
  id: number;
  username: string;
  email: string;
  passwordHash: string;
  roles: RoleName[];
}

export interface NewUser {
  username: string;
  email: string;
  passwordHash: string;
  roles: readonly RoleName[];
}

export type TakenField = 'username' | 'email';

/** The tutorial's 400 for a taken username or email. */
export function takenError(field: TakenField, cause?: unknown): BadRequestError {
  return field === 'username'
    ? new BadRequestError('user.username_taken', 'Failed! Username is already in use!', { cause })
    : new BadRequestError('user.email_taken', 'Failed! Email is already in use!', { cause });
}

/** Which field a unique violation is about, by the index that refused the row. */
const TAKEN_BY_INDEX: Record<string, TakenField> = {
  users_username_lower_unique: 'username',
  users_email_lower_unique: 'email',
};

function uniqueViolationOf(err: unknown): TakenField | undefined {
  return err instanceof UniqueViolationError ? TAKEN_BY_INDEX[err.constraint] : undefined;
}

function sortRoles(roles: readonly RoleName[]): RoleName[] {
  return ROLES.filter((role) => roles.includes(role));
}

function toRecord(user: UserModel): UserRecord {
  return {
    id: user.id,
    username: user.username,
    email: user.email,
    passwordHash: user.passwordHash,
    roles: sortRoles((user.roles ?? []).map((role) => role.name)),
  };
}

/** Users and their roles, over one Knex handle. */
export function createUserRepository(knex: Knex) {
  async function replaceRoles(trx: Knex.Transaction, userId: number, roles: readonly RoleName[]): Promise<void> {
    await trx('user_roles').where({ user_id: userId }).delete();
    if (roles.length === 0) return;
    const roleRows: { id: number }[] = await trx('roles').whereIn('name', [...roles]).select('id');
    await trx('user_roles').insert(roleRows.map((row) => ({ user_id: userId, role_id: row.id })));
  }

  return {
    /**
     * Inserts a user with roles in one transaction. A taken username or email (compared
     * case-insensitively by the database) throws the tutorial's 400, also when two sign-ups race.
     */
    async insertUser(input: NewUser): Promise<UserRecord> {
      try {
        return await knex.transaction(async (trx) => {
          const user = await UserModel.query(trx).insert({
            username: input.username,
            email: input.email,
            passwordHash: input.passwordHash,
          });
          await replaceRoles(trx, user.id, input.roles);
          return { ...toRecord(user), roles: sortRoles(input.roles) };
        });
      } catch (err) {
        const taken = uniqueViolationOf(err);
        throw taken ? takenError(taken, err) : err;
      }
    },

    /** The user with this username, compared case-insensitively, with roles; or undefined. */
    async findUserByUsername(username: string): Promise<UserRecord | undefined> {
      const user = await UserModel.query(knex)
        .whereRaw('lower(username) = lower(?)', [username])
        .withGraphFetched('roles')
        .first();
      return user && toRecord(user);
    },

    /** Which of username and email (compared case-insensitively) is taken, username first. */
    async findTakenField(username: string, email: string): Promise<TakenField | undefined> {
      const rows: { username: string; email: string }[] = await knex('users')
        .whereRaw('lower(username) = lower(?)', [username])
        .orWhereRaw('lower(email) = lower(?)', [email])
        .select('username', 'email');
      if (rows.some((row) => row.username.toLowerCase() === username.toLowerCase())) return 'username';
      return rows.length > 0 ? 'email' : undefined;
    },

    /** Replaces a user's roles with exactly `roles`; returns false when there is no such user. */
    async setUserRoles(userId: number, roles: readonly RoleName[]): Promise<boolean> {
      return knex.transaction(async (trx) => {
        // Lock the user row so concurrent role updates of one user apply one after the other.
        const user = await UserModel.query(trx).findById(userId).forUpdate();
        if (!user) return false;
        await replaceRoles(trx, userId, roles);
        await UserModel.query(trx).findById(userId).patch({ updatedAt: new Date() });
        return true;
      });
    },
  };
}

export type UserRepository = ReturnType<typeof createUserRepository>;
