import type { KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { UnauthorizedError } from '@gatehouse/common';
import { ACCESS_TOKEN_ALGORITHM, MAX_TOKEN_LENGTH, accessTokenClaimsSchema, type AccessTokenClaims } from './claims';
import type { KeyResolver } from './jwks';

export interface VerifyOptions {
  keys: KeyResolver;
  issuer: string;
  audience: string;
  clockToleranceSeconds: number;
  /** Seconds since the epoch, from the injected clock. */
  nowSeconds: () => number;
  /** True for a token issued before its user's tokens were revoked (see `revocations.ts`). */
  isRevoked?: (claims: AccessTokenClaims) => boolean;
  /** How many verified tokens to remember (0: none). See `createTokenVerifier`. */
  cacheSize?: number;
}

interface Verified {
  claims: AccessTokenClaims;
  kid: string;
  /** The key that verified the signature; a hit needs the same key still published. */
  key: KeyObject;
}

/** The one rejection every bad token gets; the cause is kept for logs, never sent. */
export function invalidToken(cause: unknown): UnauthorizedError {
  return new UnauthorizedError('auth.invalid_token', 'Unauthorized!', {
    cause,
    headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' },
  });
}

const KID_PATTERN = /^[A-Za-z0-9_-]{1,128}$/;

/**
 * Verifies an access token and returns its claims, or throws 401 `auth.invalid_token`.
 *
 * @remarks The algorithm list is pinned to RS256 and checked on the header before a key is
 * looked up, so `none`, HS256-with-the-public-key and other confusions never reach a verifier;
 * issuer, audience and expiry are checked by jsonwebtoken, the claim shapes by zod, and
 * revocation last, by `isRevoked` when given.
 *
 * An RSA signature check costs more than the rest of a request, and a client sends the same
 * token many times; with `cacheSize`, the claims of up to that many verified tokens are kept
 * (the oldest dropped first),
 * keyed by the whole token string. A hit still checks expiry, revocation and that the key
 * which verified it is still the one published under its `kid`, so a hit accepts nothing a
 * full verification would refuse.
 */
export function createTokenVerifier(options: VerifyOptions): (token: string) => Promise<AccessTokenClaims> {
  const cacheSize = options.cacheSize ?? 0;
  const verified = new Map<string, Verified>();

  function remember(token: string, entry: Verified): void {
    if (cacheSize === 0) return;
    // A Map iterates in insertion order: the first key is the oldest entry.
    const oldest = verified.keys().next();
    if (verified.size >= cacheSize && !oldest.done) verified.delete(oldest.value);
    verified.set(token, entry);
  }

  async function fromCache(token: string): Promise<AccessTokenClaims | undefined> {
    const hit = verified.get(token);
    if (!hit) return undefined;
    const published = await options.keys.getKey(hit.kid);
    // The key that verified it must still be published: the same object, or (after a refetch
    // of the JWKS) the same key material, compared only then.
    const stillPublished = published === hit.key || published?.equals(hit.key) === true;
    if (hit.claims.exp + options.clockToleranceSeconds <= options.nowSeconds() || !stillPublished) {
      verified.delete(token);
      return undefined;
    }
    return hit.claims;
  }

  return async function verifyAccessToken(token) {
    if (token.length > MAX_TOKEN_LENGTH) throw invalidToken(new Error('token too long'));
    const cached = await fromCache(token);
    if (cached) {
      if (options.isRevoked?.(cached)) throw invalidToken(new Error('token revoked'));
      return cached;
    }
    let decoded: jwt.Jwt | null;
    try {
      // decode() throws on some malformed payloads (a `typ: JWT` header over non-JSON).
      decoded = jwt.decode(token, { complete: true });
    } catch (err) {
      throw invalidToken(err);
    }
    if (!decoded || typeof decoded.payload === 'string') throw invalidToken(new Error('malformed token'));
    const { alg, kid } = decoded.header;
    if (alg !== ACCESS_TOKEN_ALGORITHM) throw invalidToken(new Error(`algorithm ${alg} not allowed`));
    if (typeof kid !== 'string' || !KID_PATTERN.test(kid)) throw invalidToken(new Error('missing or malformed kid'));
    const key = await options.keys.getKey(kid);
    if (!key) throw invalidToken(new Error(`unknown kid ${kid}`));

    let payload: unknown;
    try {
      payload = jwt.verify(token, key, {
        algorithms: [ACCESS_TOKEN_ALGORITHM],
        issuer: options.issuer,
        audience: options.audience,
        clockTolerance: options.clockToleranceSeconds,
        clockTimestamp: options.nowSeconds(),
      });
    } catch (err) {
      throw invalidToken(err);
    }
    const claims = accessTokenClaimsSchema.safeParse(payload);
    if (!claims.success) throw invalidToken(claims.error);
    // Frozen: one claims object is handed to every request that presents this token.
    remember(token, { claims: Object.freeze(claims.data), kid, key });
    if (options.isRevoked?.(claims.data)) throw invalidToken(new Error('token revoked'));
    return claims.data;
  };
}
