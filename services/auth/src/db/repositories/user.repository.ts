import type { Knex } from 'knex';
import { UniqueViolationError } from 'objection';
import { BadRequestError } from '@gatehouse/common';
import { ROLES, type RoleName } from '@gatehouse/tokens';
import { UserModel } from '../models/user.model';
import { toEventRow, type NewEvent } from './event.repository';

/** A `users` row as the database returns it. */
type UserRow = Record<string, unknown>;

export interface UserRecord {
  id: number;
  username: string;
  email: string;
  passwordHash: string;
  roles: RoleName[];
  /** Stamped into access tokens as `ver`; tokens with a lower one are revoked. */
  tokenVersion: number;
  disabledAt: Date | null;
  createdAt: Date;
}

export interface NewUser {
  username: string;
  email: string;
  passwordHash: string;
  roles: readonly RoleName[];
  /** Written in the same statement; its `userId` is the new user's. */
  audit?: Omit<NewEvent, 'userId'>;
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
  if (err instanceof UniqueViolationError) return TAKEN_BY_INDEX[err.constraint];
  // A raw query's error, straight from the driver (pg and PGlite alike): SQLSTATE 23505.
  if (typeof err !== 'object' || err === null || !('code' in err) || err.code !== '23505') return undefined;
  return 'constraint' in err && typeof err.constraint === 'string' ? TAKEN_BY_INDEX[err.constraint] : undefined;
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
    tokenVersion: user.tokenVersion,
    disabledAt: user.disabledAt,
    createdAt: user.createdAt,
  };
}

/** A `users` row with its role names, as `selectWithRoles` reads it. */
type UserRowWithRoles = UserRow & { role_names: RoleName[] };

/** How a read of a user locks the row until the transaction ends (see `findUserById`). */
export type UserLock = 'update' | 'no key update';

/** `users` rows with their role names in the same query: one round trip, not objection's two. */
function selectWithRoles(knex: Knex) {
  return knex('users').select(
    'users.*',
    knex.raw(
      'ARRAY(SELECT roles.name FROM user_roles JOIN roles ON roles.id = user_roles.role_id WHERE user_roles.user_id = users.id) AS role_names',
    ),
  );
}

function recordOf(row: UserRowWithRoles): UserRecord {
  const { role_names: roleNames, ...columns } = row;
  return { ...toRecord(UserModel.fromDatabaseJson(columns)), roles: sortRoles(roleNames) };
}

/** `%`, `_` and `\` match literally in a LIKE pattern built from user input. */
function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (char) => `\\${char}`);
}

export interface UserListQuery {
  /** Substring of the username or email, case-insensitive. */
  search?: string;
  limit: number;
  offset: number;
}

/**
 * Users and their roles, over one Knex handle: the pool, or a transaction when a service
 * needs several changes to commit together.
 */
export function createUserRepository(knex: Knex) {
  async function replaceRoles(trx: Knex, userId: number, roles: readonly RoleName[]): Promise<void> {
    await trx('user_roles').where({ user_id: userId }).delete();
    if (roles.length === 0) return;
    const roleRows: { id: number }[] = await trx('roles').whereIn('name', [...roles]).select('id');
    await trx('user_roles').insert(roleRows.map((row) => ({ user_id: userId, role_id: row.id })));
  }

  /** Locks the user's row until the transaction ends; false when there is no such user. */
  async function lockRow(userId: number, lock: UserLock): Promise<boolean> {
    const query = knex('users').where({ id: userId });
    const row = await (lock === 'update' ? query.forUpdate() : query.forNoKeyUpdate()).first('id');
    return row !== undefined;
  }

  return {
    /**
     * Inserts a user, their roles and (when given) the audit event in one statement: one round
     * trip, atomic on its own. A taken username or email (compared case-insensitively by the
     * database) throws the tutorial's 400, also when two sign-ups race.
     */
    async insertUser(input: NewUser): Promise<UserRecord> {
      const audit = input.audit ? toEventRow({ ...input.audit }) : undefined;
      try {
        const result = await knex.raw<{ rows: UserRow[] }>(
          `WITH new_user AS (
             INSERT INTO users (username, email, password_hash) VALUES (:username, :email, :passwordHash) RETURNING *
           ), new_roles AS (
             INSERT INTO user_roles (user_id, role_id)
             SELECT new_user.id, roles.id FROM new_user, roles WHERE roles.name = ANY(CAST(:roles AS text[]))
           ), new_event AS (
             INSERT INTO auth_events (type, user_id, actor_id, ip, user_agent, details, created_at)
             SELECT CAST(:type AS text), new_user.id, CAST(:actorId AS integer), CAST(:ip AS text),
                    CAST(:userAgent AS text), CAST(:details AS jsonb), CAST(:createdAt AS timestamptz)
             FROM new_user WHERE CAST(:audit AS boolean)
           )
           SELECT * FROM new_user`,
          {
            username: input.username,
            email: input.email,
            passwordHash: input.passwordHash,
            roles: [...input.roles],
            audit: audit !== undefined,
            type: audit?.type ?? null,
            actorId: audit?.actor_id ?? null,
            ip: audit?.ip ?? null,
            userAgent: audit?.user_agent ?? null,
            details: audit?.details ?? null,
            createdAt: audit?.created_at ?? null,
          },
        );
        const [row] = result.rows;
        if (!row) throw new Error('insert returned no user');
        return { ...toRecord(UserModel.fromDatabaseJson(row)), roles: sortRoles(input.roles) };
      } catch (err) {
        const taken = uniqueViolationOf(err);
        throw taken ? takenError(taken, err) : err;
      }
    },

    /** The user with this username, compared case-insensitively, with roles; or undefined. */
    async findUserByUsername(username: string): Promise<UserRecord | undefined> {
      const row: UserRowWithRoles | undefined = await selectWithRoles(knex).whereRaw('lower(username) = lower(?)', [username]).first();
      return row && recordOf(row);
    },

    /**
     * The user with this id, with roles; or undefined. With a `lock`, the row stays locked until
     * the transaction ends: `update` for changes to the user itself (roles, disabling), applied
     * one after the other; `no key update` as `lockUser` takes it, for work on their sessions.
     *
     * @remarks Locked first, read after, in two statements. A locking read that waited for
     * another transaction re-reads the user's row as that one left it, but its roles subquery
     * still sees the database from before the wait: the token version could be new and the
     * roles old. The read after the lock sees everything committed before it. A lock means
     * something only on a transaction's handle: on the pool it ends with its statement.
     */
    async findUserById(id: number, options: { lock?: UserLock } = {}): Promise<UserRecord | undefined> {
      if (options.lock !== undefined && !(await lockRow(id, options.lock))) return undefined;
      const row: UserRowWithRoles | undefined = await selectWithRoles(knex).where('users.id', id).first();
      return row && recordOf(row);
    },

    /** A page of users by id, optionally filtered, with the total that match. */
    async listUsers(query: UserListQuery): Promise<{ users: UserRecord[]; total: number }> {
      const filtered = () => {
        const builder = UserModel.query(knex);
        if (query.search) {
          const pattern = `%${escapeLike(query.search.toLowerCase())}%`;
          builder.where((where) =>
            where.whereRaw('lower(username) like ?', [pattern]).orWhereRaw('lower(email) like ?', [pattern]),
          );
        }
        return builder;
      };
      const [users, total] = await Promise.all([
        filtered().withGraphFetched('roles').orderBy('id').limit(query.limit).offset(query.offset),
        filtered().resultSize(),
      ]);
      return { users: users.map(toRecord), total };
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

    /**
     * Locks the user's row until the transaction ends, so that everything touching one user's
     * sessions (refresh, sign-out, reuse detection, disabling) runs one at a time, and always
     * takes the user's lock before any token's: the same order everywhere, so no deadlock.
     * `FOR NO KEY UPDATE` still lets inserts that reference the user through.
     */
    async lockUser(userId: number): Promise<boolean> {
      return lockRow(userId, 'no key update');
    },

    /** Replaces a user's roles with exactly `roles`. Call inside a transaction that locked the user. */
    async replaceUserRoles(userId: number, roles: readonly RoleName[]): Promise<void> {
      await replaceRoles(knex, userId, roles);
      await UserModel.query(knex).findById(userId).patch({ updatedAt: new Date() });
    },

    async updatePasswordHash(userId: number, passwordHash: string): Promise<void> {
      await UserModel.query(knex).findById(userId).patch({ passwordHash, updatedAt: new Date() });
    },

    /** Sets or clears `disabled_at`. */
    async setDisabledAt(userId: number, disabledAt: Date | null): Promise<void> {
      await UserModel.query(knex).findById(userId).patch({ disabledAt, updatedAt: new Date() });
    },

    /**
     * Revokes every access token issued to the user so far: bumps the token version the
     * tokens carry and records when, for the revocation feed. Returns the new version.
     */
    async revokeAccessTokens(userId: number, at: Date): Promise<number> {
      const [row]: { token_version: number }[] = await knex('users')
        .where({ id: userId })
        .update({ token_version: knex.raw('token_version + 1'), tokens_revoked_at: at })
        .returning('token_version');
      if (!row) throw new Error(`no user ${userId}`);
      return row.token_version;
    },

    /** Ids of the users that hold the admin role and are not disabled. */
    async findActiveAdminIds(): Promise<number[]> {
      const rows: { id: number }[] = await knex('users')
        .join('user_roles', 'user_roles.user_id', 'users.id')
        .join('roles', 'roles.id', 'user_roles.role_id')
        .where('roles.name', 'admin')
        .whereNull('users.disabled_at')
        .select('users.id');
      return rows.map((row) => row.id);
    },

    /**
     * Users whose tokens were revoked after `since`, with the lowest token version still valid:
     * the revocation feed.
     */
    async findRevocationsSince(since: Date): Promise<{ sub: string; ver: number }[]> {
      const rows: { id: number; token_version: number }[] = await knex('users')
        .where('tokens_revoked_at', '>', since)
        .select('id', 'token_version');
      return rows.map((row) => ({ sub: String(row.id), ver: row.token_version }));
    },
  };
}

export type UserRepository = ReturnType<typeof createUserRepository>;
