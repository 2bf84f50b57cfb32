import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { AppError, BadRequestError, ForbiddenError, UnauthorizedError } from '@gatehouse/common';
import { ROLES, invalidToken, signAccessToken, type RoleName } from '@gatehouse/tokens';
import { createRepositories, type Repositories } from '../db/repositories';
import type { RequestMeta } from '../db/repositories/event.repository';
import type { RefreshTokenRow } from '../db/repositories/refresh-token.repository';
import { takenError, type UserRecord } from '../db/repositories/user.repository';
import { USERNAME_PATTERN } from '../routes/auth/auth.schema';
import { guessablePasswordError, personalInputs } from './password-strength';
import type { PasswordHasher } from './passwords';
import type { SigninThrottle } from './signin-throttle';
import { generateRefreshToken, hashRefreshToken, sealSuccessor, unsealSuccessor } from './refresh-tokens';
import type { KeyStore } from './signing-keys';

/** The token settings of the auth service's config that sign-in and refresh use. */
export interface TokenSettings {
  issuer: string;
  audience: string;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  /** 0: off. Else a rotated refresh token presented again this soon returns the same successor. */
  refreshReuseIntervalSeconds: number;
}

export interface SignUpInput {
  username: string;
  email: string;
  password: string;
  roles?: string[];
}

/** What sign-in and refresh hand back: the user as the tokens describe them, and the tokens. */
export interface Session {
  user: UserRecord;
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
}

/** True for a role Gatehouse knows (`user`, `moderator`, `admin`). */
export function isRole(name: string): name is RoleName {
  return ROLES.some((role) => role === name);
}

const invalidCredentials = () => new UnauthorizedError('auth.invalid_credentials', 'Invalid username or password!');
const userDisabled = () => new ForbiddenError('auth.user_disabled', 'User is disabled.');

// The refresh errors keep the texts of the tutorial family's refresh-token chapter, 403 included,
// so its clients still send the user back to sign-in.
const refreshErrors = {
  unknown: () => new ForbiddenError('auth.refresh_token_unknown', 'Refresh token is not in database!'),
  expired: () =>
    new ForbiddenError('auth.refresh_token_expired', 'Refresh token was expired. Please make a new signin request'),
  revoked: () =>
    new ForbiddenError('auth.refresh_token_revoked', 'Refresh token was revoked. Please make a new signin request'),
  reused: () =>
    new ForbiddenError(
      'auth.refresh_token_reused',
      'Refresh token was already used; the session has been ended. Please make a new signin request',
    ),
  disabled: userDisabled,
};

type RefreshRefusal = keyof typeof refreshErrors;

type RefreshOutcome =
  // `reissued`: the successor handed out again within the reuse interval.
  | { kind: 'rotated'; user: UserRecord; refreshToken: string; familyId: string; reissued?: true }
  | { kind: 'refused'; reason: RefreshRefusal };

/** How a sign-in ended, as `gatehouse_signin_total{outcome}` counts it; `error` is a 5xx. */
export const SIGNIN_OUTCOMES = ['success', 'bad_credentials', 'locked', 'disabled', 'abandoned', 'error'] as const;
export type SigninOutcome = (typeof SIGNIN_OUTCOMES)[number];

/** How a refresh ended (`gatehouse_refresh_total{outcome}`); `reused` is a reuse detection. */
export const REFRESH_OUTCOMES = ['rotated', 'reissued', 'reused', 'expired', 'revoked', 'unknown', 'disabled', 'error'] as const;
export type RefreshOutcomeName = (typeof REFRESH_OUTCOMES)[number];

/** Where the service reports how each sign-in and refresh ended: the metrics count them. */
export interface AuthOutcomes {
  signin(outcome: SigninOutcome): void;
  refresh(outcome: RefreshOutcomeName): void;
}

const SIGNIN_REFUSALS: Readonly<Record<string, SigninOutcome>> = {
  'auth.invalid_credentials': 'bad_credentials',
  'auth.too_many_attempts': 'locked',
  'auth.user_disabled': 'disabled',
  // The client closed the request while its password check waited for a thread.
  'request.client_closed': 'abandoned',
};

/** The outcome of a sign-in that threw `err`: a refusal by its code, anything else an error. */
function signinOutcomeOf(err: unknown): SigninOutcome {
  return (err instanceof AppError ? SIGNIN_REFUSALS[err.code] : undefined) ?? 'error';
}

/** Sign-up, sign-in, refresh and sign-out: the business rules, apart from HTTP. */
export function createAuthService(deps: {
  knex: Knex;
  passwords: PasswordHasher;
  throttle: SigninThrottle;
  keys: KeyStore;
  tokens: TokenSettings;
  clock: () => Date;
  /** Told how each sign-in and refresh ended; by default, no one is. */
  outcomes?: AuthOutcomes;
}) {
  const { knex, passwords, throttle, keys, tokens, clock } = deps;
  const outcomes: AuthOutcomes = deps.outcomes ?? { signin: () => {}, refresh: () => {} };
  const repos = createRepositories(knex);

  function issueAccessToken(user: UserRecord, sessionId: string): string {
    return signAccessToken(user, {
      key: keys.current,
      issuer: tokens.issuer,
      audience: tokens.audience,
      ttlSeconds: tokens.accessTokenTtlSeconds,
      nowSeconds: Math.floor(clock().getTime() / 1000),
      sessionId,
    }).token;
  }

  /** Stores a new refresh token of `familyId`; returns the token and its row id. */
  async function storeRefreshToken(
    tx: Repositories,
    userId: number,
    familyId: string,
    meta: RequestMeta,
    now: Date,
  ): Promise<{ token: string; id: string }> {
    const token = generateRefreshToken();
    const id = await tx.refreshTokens.insertRefreshToken({
      tokenHash: hashRefreshToken(token),
      familyId,
      userId,
      createdAt: now,
      expiresAt: new Date(now.getTime() + tokens.refreshTokenTtlSeconds * 1000),
      clientIp: meta.ip,
      userAgent: meta.userAgent,
    });
    return { token, id };
  }

  /**
   * The sealed successor of a used token when it may be handed out again: the reuse interval is
   * on, has not passed, and the successor is still unused and live. Otherwise undefined.
   */
  async function reusableSuccessor(tx: Repositories, row: RefreshTokenRow, now: Date): Promise<string | undefined> {
    if (tokens.refreshReuseIntervalSeconds === 0 || !row.used_at || !row.replaced_by || !row.successor_sealed) return undefined;
    if (now.getTime() - row.used_at.getTime() > tokens.refreshReuseIntervalSeconds * 1000) return undefined;
    const successor = await tx.refreshTokens.findRefreshTokenById(row.replaced_by, { forUpdate: true });
    const live = !!successor && !successor.used_at && !successor.revoked_at && successor.expires_at > now;
    return live ? row.successor_sealed : undefined;
  }

  /**
   * One refresh, inside one transaction holding the user's lock, then the presented token's.
   * Refusals that must stick (reuse detection revokes the family) are returned, not thrown, so
   * they commit.
   *
   * @remarks Locking the user first serialises the refresh with a concurrent sign-out, reuse
   * detection or disabling of the same user; with only the token's lock, those could revoke
   * the family without seeing the successor this refresh inserts.
   */
  async function rotate(presented: string, meta: RequestMeta): Promise<RefreshOutcome> {
    const tokenHash = hashRefreshToken(presented);
    const owner = await repos.refreshTokens.findRefreshTokenByHash(tokenHash);
    if (!owner) return { kind: 'refused', reason: 'unknown' };
    return knex.transaction(async (trx) => {
      const tx = createRepositories(trx);
      // The user locked (the lock `lockUser` takes), then read as they are now.
      const user = await tx.users.findUserById(owner.user_id, { lock: 'no key update' });
      const now = clock();
      const row = await tx.refreshTokens.findRefreshTokenForUpdate(tokenHash);
      if (!row) return { kind: 'refused', reason: 'unknown' };
      if (row.revoked_at) return { kind: 'refused', reason: 'revoked' };

      if (row.used_at) {
        const sealed = await reusableSuccessor(tx, row, now);
        if (sealed) {
          if (!user || user.disabledAt) return { kind: 'refused', reason: 'disabled' };
          await tx.events.recordEvent({
            type: 'token.refresh',
            userId: user.id,
            details: { family: row.family_id, reuseInterval: true },
            at: now,
            ...meta,
          });
          return { kind: 'rotated', user, refreshToken: unsealSuccessor(presented, sealed), familyId: row.family_id, reissued: true };
        }
        // A retired token came back: whoever holds the family now, one of the two is a thief.
        // End the family, and the access tokens issued so far (the thief may hold one): the
        // user's other sessions just refresh.
        await tx.refreshTokens.revokeFamily(row.family_id, 'reuse_detected', now);
        await tx.users.revokeAccessTokens(row.user_id, now);
        await tx.events.recordEvent({
          type: 'token.reuse_detected',
          userId: row.user_id,
          details: { family: row.family_id },
          at: now,
          ...meta,
        });
        return { kind: 'refused', reason: 'reused' };
      }

      if (row.expires_at <= now) return { kind: 'refused', reason: 'expired' };
      if (!user || user.disabledAt) return { kind: 'refused', reason: 'disabled' };

      const successor = await storeRefreshToken(tx, user.id, row.family_id, meta, now);
      await tx.refreshTokens.markRotated(row.id, {
        usedAt: now,
        replacedBy: successor.id,
        successorSealed: tokens.refreshReuseIntervalSeconds > 0 ? sealSuccessor(presented, successor.token) : undefined,
      });
      await tx.events.recordEvent({ type: 'token.refresh', userId: user.id, details: { family: row.family_id }, at: now, ...meta });
      return { kind: 'rotated', user, refreshToken: successor.token, familyId: row.family_id };
    });
  }

  /** Sign-in itself (see the `signIn` method); throws its refusals. */
  async function startSession(input: { username: string; password: string }, meta: RequestMeta, signal?: AbortSignal): Promise<Session> {
    const attempt = await throttle.reserve(input.username, meta.ip, clock());
    let user: UserRecord | undefined;
    let valid: boolean;
    try {
      // A name no sign-up could have made (other scripts, look-alike letters) is an unknown
      // user without asking the database, whose lower() might fold it onto a real username
      // and so onto counters other than the real account's.
      user = USERNAME_PATTERN.test(input.username) ? await repos.users.findUserByUsername(input.username) : undefined;
      valid = await passwords.verify(input.password, user?.passwordHash, signal);
    } catch (err) {
      await attempt.release().catch(() => undefined);
      throw err;
    }
    if (!user || !valid || user.disabledAt) {
      const reason = !user || !valid ? 'invalid_credentials' : 'disabled';
      await (reason === 'invalid_credentials' ? attempt.failed(clock()) : attempt.release());
      await repos.events.recordEvent({
        type: 'signin.failure',
        userId: user?.id,
        details: { username: input.username.slice(0, 64), reason },
        at: clock(),
        ...meta,
      });
      throw reason === 'disabled' ? userDisabled() : invalidCredentials();
    }
    await attempt.succeeded();
    if (passwords.needsRehash(user.passwordHash)) {
      await repos.users.updatePasswordHash(user.id, await passwords.hash(input.password));
    }
    const familyId = randomUUID();
    // Under the user's lock, read the user again: a disable or signout-all that committed
    // while the password was being checked must not be outlived by this new session.
    const started = await knex.transaction(async (trx) => {
      const tx = createRepositories(trx);
      const current = await tx.users.findUserById(user.id, { lock: 'no key update' });
      if (!current || current.disabledAt) return undefined;
      const now = clock();
      const stored = await storeRefreshToken(tx, current.id, familyId, meta, now);
      await tx.events.recordEvent({ type: 'signin.success', userId: current.id, details: { family: familyId }, at: now, ...meta });
      return { user: current, refreshToken: stored.token };
    });
    if (!started) throw userDisabled();
    return {
      user: started.user,
      accessToken: issueAccessToken(started.user, familyId),
      refreshToken: started.refreshToken,
      expiresIn: tokens.accessTokenTtlSeconds,
    };
  }

  return {
    /**
     * Registers a plain `user`. Requested roles must exist (the tutorial's 400 otherwise) but are
     * never granted: self sign-up cannot make a moderator or an admin; only an admin can.
     */
    async signUp(input: SignUpInput, meta: RequestMeta, signal?: AbortSignal): Promise<UserRecord> {
      const unknownRole = input.roles?.find((role) => !isRole(role));
      if (unknownRole !== undefined) {
        // The tutorial reports a taken username or email before an unknown role.
        const taken = await repos.users.findTakenField(input.username, input.email);
        if (taken) throw takenError(taken);
        throw new BadRequestError('user.unknown_role', `Failed! Role does not exist: ${unknownRole}`);
      }
      if (await passwords.isTooGuessable(input.password, personalInputs(input), signal)) throw guessablePasswordError();
      const passwordHash = await passwords.hash(input.password, signal);
      return repos.users.insertUser({
        username: input.username,
        email: input.email,
        passwordHash,
        roles: ['user'],
        audit: { type: 'user.signup', at: clock(), ...meta },
      });
    },

    /**
     * Checks a username and password and starts a session: an access token and the first
     * refresh token of a new family. Unknown user and wrong password fail alike: same status,
     * same body, one bcrypt comparison each. A disabled user learns so only with the right
     * password. Repeated failures lock the attempt's counters (429, see `signin-throttle.ts`).
     * A hash made at a lower cost than configured is replaced on the way.
     */
    async signIn(input: { username: string; password: string }, meta: RequestMeta, signal?: AbortSignal): Promise<Session> {
      try {
        const session = await startSession(input, meta, signal);
        outcomes.signin('success');
        return session;
      } catch (err) {
        outcomes.signin(signinOutcomeOf(err));
        throw err;
      }
    },

    /**
     * Rotates a refresh token: a new access token (with the user's roles as they are now) and
     * a new refresh token; the presented one is retired. A retired token presented again ends
     * its whole family, unless it comes back within the reuse interval while its successor is
     * unused, which returns that same successor.
     */
    async refresh(presented: string, meta: RequestMeta): Promise<Session> {
      const outcome = await rotate(presented, meta).catch((err: unknown) => {
        outcomes.refresh('error');
        throw err;
      });
      outcomes.refresh(outcome.kind === 'refused' ? outcome.reason : outcome.reissued ? 'reissued' : 'rotated');
      if (outcome.kind === 'refused') throw refreshErrors[outcome.reason]();
      return {
        user: outcome.user,
        accessToken: issueAccessToken(outcome.user, outcome.familyId),
        refreshToken: outcome.refreshToken,
        expiresIn: tokens.accessTokenTtlSeconds,
      };
    },

    /**
     * Ends one session: the family of the presented refresh token, or the session the access
     * token was issued for. Signing out twice, or with an unknown token, is not an error.
     */
    async signOut(session: { refreshToken: string } | { userId: number; sessionId?: string }, meta: RequestMeta): Promise<void> {
      let target: { userId: number; familyId: string } | undefined;
      if ('refreshToken' in session) {
        const row = await repos.refreshTokens.findRefreshTokenByHash(hashRefreshToken(session.refreshToken));
        target = row && { userId: row.user_id, familyId: row.family_id };
      } else if (session.sessionId) {
        target = { userId: session.userId, familyId: session.sessionId };
      }
      if (!target) return;
      const { userId, familyId } = target;
      await knex.transaction(async (trx) => {
        const tx = createRepositories(trx);
        await tx.users.lockUser(userId);
        const now = clock();
        const ended = await tx.refreshTokens.revokeFamily(familyId, 'signout', now);
        if (ended > 0) await tx.events.recordEvent({ type: 'signout', userId, details: { family: familyId }, at: now, ...meta });
      });
    },

    /**
     * Ends every session of a user: all refresh tokens, and (through the revocation feed)
     * every access token issued so far.
     */
    async signOutAll(userId: number, meta: RequestMeta): Promise<void> {
      await knex.transaction(async (trx) => {
        const tx = createRepositories(trx);
        const now = clock();
        if (!(await tx.users.lockUser(userId))) throw invalidToken(new Error('user no longer exists'));
        const ended = await tx.refreshTokens.revokeUserTokens(userId, 'signout_all', now);
        await tx.users.revokeAccessTokens(userId, now);
        await tx.events.recordEvent({ type: 'signout.all', userId, details: { refreshTokens: ended }, at: now, ...meta });
      });
    },
  };
}

export type AuthService = ReturnType<typeof createAuthService>;
