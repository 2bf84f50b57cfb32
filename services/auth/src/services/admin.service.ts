import type { Knex } from 'knex';
import { ConflictError, NotFoundError, assertThat } from '@gatehouse/common';
import type { RoleName } from '@gatehouse/tokens';
import { createRepositories, type Repositories } from '../db/repositories';
import type { AuthEvent, EventQuery, RequestMeta } from '../db/repositories/event.repository';
import type { UserListQuery, UserRecord } from '../db/repositories/user.repository';

/** Serialises every change that could leave no admin, across instances. */
const ADMINS_LOCK = "SELECT pg_advisory_xact_lock(hashtext('gatehouse.admins'))";

const userNotFound = () => new NotFoundError('user.not_found', 'User not found.');
const lastAdmin = () =>
  new ConflictError('user.last_admin', 'Cannot remove the last admin: make another user an admin first.');

/** The acting admin (none for the operator's CLI) and where the request came from. */
export interface AdminAction extends RequestMeta {
  actorId?: number;
}

/**
 * User administration for admins: list and show users, set roles, disable and enable. Every
 * change is audited and revokes the user's access tokens through the revocation feed.
 */
export function createAdminService(deps: { knex: Knex; clock: () => Date }) {
  const { knex, clock } = deps;
  const repos = createRepositories(knex);

  /**
   * Runs `change` on a locked user inside a transaction; refuses it when it would leave no
   * active admin. `staysActiveAdmin` says whether the user is an active admin afterwards.
   */
  async function changeUser<T>(
    userId: number,
    staysActiveAdmin: (user: UserRecord) => boolean,
    change: (tx: Repositories, user: UserRecord, now: Date) => Promise<T>,
  ): Promise<T> {
    return knex.transaction(async (trx) => {
      await trx.raw(ADMINS_LOCK);
      const tx = createRepositories(trx);
      const user = await tx.users.findUserById(userId, { lock: 'update' });
      assertThat(user, userNotFound());
      if (!staysActiveAdmin(user)) {
        const admins = await tx.users.findActiveAdminIds();
        if (admins.length === 1 && admins[0] === user.id) throw lastAdmin();
      }
      return change(tx, user, clock());
    });
  }

  return {
    listUsers: (query: UserListQuery) => repos.users.listUsers(query),

    async getUser(userId: number): Promise<UserRecord> {
      const user = await repos.users.findUserById(userId);
      assertThat(user, userNotFound());
      return user;
    },

    /** Gives the user exactly `roles` (the tutorial's `updateRoles`). */
    async setRoles(userId: number, roles: readonly RoleName[], action: AdminAction): Promise<UserRecord> {
      const { actorId, ...meta } = action;
      return changeUser(
        userId,
        (user) => roles.includes('admin') && !user.disabledAt,
        async (tx, user, now) => {
          await tx.users.replaceUserRoles(user.id, roles);
          await tx.users.revokeAccessTokens(user.id, now);
          await tx.events.recordEvent({
            type: 'user.roles_changed',
            userId: user.id,
            actorId,
            details: { from: user.roles, to: roles },
            at: now,
            ...meta,
          });
          const updated = await tx.users.findUserById(user.id);
          assertThat(updated, userNotFound());
          return updated;
        },
      );
    },

    /**
     * Disables or re-enables a user. Disabling ends every session and revokes every access
     * token; a disabled user cannot sign in or refresh until enabled again.
     */
    async setDisabled(userId: number, disabled: boolean, action: AdminAction): Promise<UserRecord> {
      const { actorId, ...meta } = action;
      return changeUser(
        userId,
        (user) => user.roles.includes('admin') && !disabled,
        async (tx, user, now) => {
          if (disabled === !!user.disabledAt) return user;
          await tx.users.setDisabledAt(user.id, disabled ? now : null);
          if (disabled) {
            await tx.refreshTokens.revokeUserTokens(user.id, 'user_disabled', now);
            await tx.users.revokeAccessTokens(user.id, now);
          }
          await tx.events.recordEvent({ type: disabled ? 'user.disabled' : 'user.enabled', userId: user.id, actorId, at: now, ...meta });
          const updated = await tx.users.findUserById(user.id);
          assertThat(updated, userNotFound());
          return updated;
        },
      );
    },

    listEvents: (query: EventQuery): Promise<AuthEvent[]> => repos.events.listEvents(query),
  };
}

export type AdminService = ReturnType<typeof createAdminService>;
