import type { Knex } from 'knex';

/** One stored refresh token: its hash, never the token. */
export interface RefreshTokenRow {
  id: string;
  token_hash: string;
  family_id: string;
  user_id: number;
  created_at: Date;
  expires_at: Date;
  used_at: Date | null;
  replaced_by: string | null;
  successor_sealed: string | null;
  revoked_at: Date | null;
  revoked_reason: string | null;
}

export interface NewRefreshToken {
  tokenHash: string;
  familyId: string;
  userId: number;
  createdAt: Date;
  expiresAt: Date;
  clientIp?: string;
  userAgent?: string;
}

/** Why a family of refresh tokens was ended. */
export type RevokeReason = 'signout' | 'signout_all' | 'reuse_detected' | 'user_disabled';

/** Refresh tokens, grouped in families (one per sign-in), over one Knex handle. */
export function createRefreshTokenRepository(knex: Knex) {
  return {
    async insertRefreshToken(token: NewRefreshToken): Promise<string> {
      const [row]: { id: string }[] = await knex('refresh_tokens')
        .insert({
          token_hash: token.tokenHash,
          family_id: token.familyId,
          user_id: token.userId,
          created_at: token.createdAt,
          expires_at: token.expiresAt,
          client_ip: token.clientIp ?? null,
          user_agent: token.userAgent ?? null,
        })
        .returning('id');
      if (!row) throw new Error('insert returned no id');
      return String(row.id);
    },

    /**
     * The token with this hash, locked until the transaction ends: two refreshes of one token
     * queue here, and the second sees what the first did.
     */
    async findRefreshTokenForUpdate(tokenHash: string): Promise<RefreshTokenRow | undefined> {
      return knex('refresh_tokens').where({ token_hash: tokenHash }).forUpdate().first();
    },

    async findRefreshTokenById(id: string, options: { forUpdate?: boolean } = {}): Promise<RefreshTokenRow | undefined> {
      const query = knex('refresh_tokens').where({ id });
      if (options.forUpdate) query.forUpdate();
      return query.first();
    },

    async findRefreshTokenByHash(tokenHash: string): Promise<RefreshTokenRow | undefined> {
      return knex('refresh_tokens').where({ token_hash: tokenHash }).first();
    },

    /** Retires a token in favour of its successor (rotation). */
    async markRotated(id: string, rotation: { usedAt: Date; replacedBy: string; successorSealed?: string }): Promise<void> {
      await knex('refresh_tokens').where({ id }).update({
        used_at: rotation.usedAt,
        replaced_by: rotation.replacedBy,
        successor_sealed: rotation.successorSealed ?? null,
      });
    },

    /** Ends every live token of one family; returns how many it ended. */
    async revokeFamily(familyId: string, reason: RevokeReason, at: Date): Promise<number> {
      return knex('refresh_tokens')
        .where({ family_id: familyId })
        .whereNull('revoked_at')
        .update({ revoked_at: at, revoked_reason: reason, successor_sealed: null });
    },

    /** Ends every live token of every family of a user; returns how many it ended. */
    async revokeUserTokens(userId: number, reason: RevokeReason, at: Date): Promise<number> {
      return knex('refresh_tokens')
        .where({ user_id: userId })
        .whereNull('revoked_at')
        .update({ revoked_at: at, revoked_reason: reason, successor_sealed: null });
    },
  };
}

export type RefreshTokenRepository = ReturnType<typeof createRefreshTokenRepository>;
