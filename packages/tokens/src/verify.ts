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
  /** The whole token: a hit must be this very token, not another that shares its cache key. */
  token: string;
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

// The cache's key is a token's last characters, from its signature (random-looking, and unique
// to the token), rather than the whole token: a Map hashes its string key on every lookup, and
// for a token of about 800 characters that cost close to a microsecond per request, more than
// the rest of a hit. A hit then compares the whole token, which costs far less than hashing it.
const CACHE_KEY_LENGTH = 32;

function cacheKey(token: string): string {
  return token.slice(-CACHE_KEY_LENGTH);
}

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
 * (the oldest dropped first). A hit is the very same token string, and still checks expiry,
 * revocation and that the key which verified it is still the one published under its `kid`, so
 * a hit accepts nothing a full verification would refuse.
 */
export function createTokenVerifier(options: VerifyOptions): (token: string) => Promise<AccessTokenClaims> {
  const cacheSize = options.cacheSize ?? 0;
  const verified = new Map<string, Verified>();

  function remember(token: string, entry: Verified): void {
    if (cacheSize === 0) return;
    const key = cacheKey(token);
    // A Map iterates in insertion order: the first key is the oldest entry. A token verified
    // twice at once (two first requests) replaces its own entry and evicts nothing.
    const oldest = verified.keys().next();
    if (!verified.has(key) && verified.size >= cacheSize && !oldest.done) verified.delete(oldest.value);
    verified.set(key, entry);
  }

  function fromCache(token: string): AccessTokenClaims | undefined {
    if (cacheSize === 0) return undefined;
    const key = cacheKey(token);
    const hit = verified.get(key);
    // Another token ending the same way (one made to look like a cached one) is a miss, and
    // leaves the entry alone.
    if (!hit || hit.token !== token) return undefined;
    // The key that verified it must still be published: the same object, or (after a refetch
    // of the JWKS) the same key material, compared only then. A kid no longer known is a miss:
    // the full check that follows may refetch the keys.
    const published = options.keys.knownKey(hit.kid);
    const stillPublished = published === hit.key || published?.equals(hit.key) === true;
    if (hit.claims.exp + options.clockToleranceSeconds <= options.nowSeconds() || !stillPublished) {
      verified.delete(key);
      return undefined;
    }
    return hit.claims;
  }

  return async function verifyAccessToken(token) {
    if (token.length > MAX_TOKEN_LENGTH) throw invalidToken(new Error('token too long'));
    const cached = fromCache(token);
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
    remember(token, { token, claims: Object.freeze(claims.data), kid, key });
    if (options.isRevoked?.(claims.data)) throw invalidToken(new Error('token revoked'));
    return claims.data;
  };
}
