import { randomUUID, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { ACCESS_TOKEN_ALGORITHM, type RoleName } from './claims';

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
}

export interface SignOptions {
  key: SigningKey;
  issuer: string;
  audience: string;
  ttlSeconds: number;
  /** Seconds since the epoch; comes from the injected clock. */
  nowSeconds: number;
  /** The session (refresh-token family) the token belongs to, when it has one. */
  sessionId?: string;
}

/** Signs an access token for a user. Returns the token and its expiry (seconds since epoch). */
export function signAccessToken(
  user: { id: number; username: string; roles: readonly RoleName[]; tokenVersion: number },
  options: SignOptions,
): { token: string; expiresAt: number } {
  const expiresAt = options.nowSeconds + options.ttlSeconds;
  const token = jwt.sign(
    {
      sub: String(user.id),
      id: user.id,
      username: user.username,
      roles: [...user.roles],
      ver: user.tokenVersion,
      ...(options.sessionId === undefined ? {} : { sid: options.sessionId }),
      iat: options.nowSeconds,
      exp: expiresAt,
      jti: randomUUID(),
    },
    options.key.privateKey,
    {
      algorithm: ACCESS_TOKEN_ALGORITHM,
      keyid: options.key.kid,
      issuer: options.issuer,
      audience: options.audience,
    },
  );
  return { token, expiresAt };
}
