import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { repeatEvery, type Logger } from '@gatehouse/common';
import { ACCESS_TOKEN_ALGORITHM } from './claims';
import { createJsonGetter, urlList } from './fetch-json';

/** A JSON Web Key as published in Gatehouse's JWKS (RSA public keys only). */
export interface PublicJwk {
  kty: 'RSA';
  kid: string;
  use: 'sig';
  alg: typeof ACCESS_TOKEN_ALGORITHM;
  n: string;
  e: string;
}

/** Builds the public JWK for a key pair's public half. */
export function toPublicJwk(kid: string, publicKey: KeyObject): PublicJwk {
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.kty !== 'RSA' || typeof jwk.n !== 'string' || typeof jwk.e !== 'string') {
    throw new Error(`signing key ${kid} is not an RSA key`);
  }
  return { kty: 'RSA', kid, use: 'sig', alg: ACCESS_TOKEN_ALGORITHM, n: jwk.n, e: jwk.e };
}

/** Where verification finds a public key by `kid`. */
export interface KeyResolver {
  /** The key for `kid`, or undefined when it is unknown even after a permitted refetch. */
  getKey(kid: string): Promise<KeyObject | undefined>;
  /** The key cached for `kid` now, without fetching: for a check that must not wait. */
  knownKey(kid: string): KeyObject | undefined;
}

export interface JwksClientOptions {
  /** The JWKS address; with several auth instances, one per instance, tried in turn. */
  url: string | readonly string[];
  logger: Logger;
  /** Unknown `kid`s trigger a refetch at most this often, so forged kids cannot flood auth. */
  minRefetchIntervalMs?: number;
  timeoutMs?: number;
  /** Injected for tests; milliseconds since the epoch. */
  now?: () => number;
  fetch?: typeof fetch;
}

export interface JwksClient extends KeyResolver {
  /** Fetches the JWKS now, replacing the cached keys; keeps the old ones when it fails. */
  refresh(): Promise<void>;
  /** Refetches every `intervalMs` until the returned function is called. */
  start(intervalMs: number): () => void;
  /** How many keys are cached. */
  readonly size: number;
  /** Fetches of the JWKS since the client was made, by how they ended (for the metrics). */
  readonly refreshes: Readonly<Record<'ok' | 'failed', number>>;
}

function isUsableJwk(value: unknown): value is JsonWebKey & { kid: string } {
  if (typeof value !== 'object' || value === null) return false;
  const jwk: Record<string, unknown> = { ...value };
  return (
    jwk.kty === 'RSA' &&
    typeof jwk.kid === 'string' &&
    typeof jwk.n === 'string' &&
    typeof jwk.e === 'string' &&
    (jwk.use === undefined || jwk.use === 'sig') &&
    (jwk.alg === undefined || jwk.alg === ACCESS_TOKEN_ALGORITHM)
  );
}

/**
 * A cache of the auth service's public keys, by `kid`.
 *
 * @remarks A known `kid` costs one map lookup. An unknown `kid` refetches the JWKS (at most once
 * per `minRefetchIntervalMs`, concurrent misses share one fetch), which is how a newly rotated
 * key is picked up. When auth is down the cached keys keep serving.
 */
export function createJwksClient(options: JwksClientOptions): JwksClient {
  const minInterval = options.minRefetchIntervalMs ?? 10_000;
  const timeoutMs = options.timeoutMs ?? 2_000;
  const now = options.now ?? Date.now;
  const urls = urlList(options.url);
  const getJwks = createJsonGetter('JWKS', urls, timeoutMs, options.fetch);
  let keys = new Map<string, KeyObject>();
  let lastAttempt = Number.NEGATIVE_INFINITY;
  let inFlight: Promise<void> | undefined;
  const refreshes = { ok: 0, failed: 0 };

  async function load(): Promise<void> {
    lastAttempt = now();
    const body = await getJwks();
    if (typeof body !== 'object' || body === null || !('keys' in body) || !Array.isArray(body.keys)) {
      throw new Error('JWKS has no keys array');
    }
    const list: unknown[] = body.keys;
    const next = new Map<string, KeyObject>();
    for (const jwk of list) {
      if (!isUsableJwk(jwk)) continue;
      next.set(jwk.kid, createPublicKey({ key: jwk, format: 'jwk' }));
    }
    keys = next;
    options.logger.info({ kids: [...next.keys()] }, 'signing keys loaded');
  }

  function refresh(): Promise<void> {
    inFlight ??= load()
      .then(() => {
        refreshes.ok += 1;
      })
      .catch((err: unknown) => {
        refreshes.failed += 1;
        options.logger.warn({ err, urls }, 'could not fetch signing keys; keeping cached ones');
        throw err;
      })
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  }

  return {
    refresh,
    start: (intervalMs) => repeatEvery(intervalMs, refresh),
    get size() {
      return keys.size;
    },
    get refreshes() {
      return { ...refreshes };
    },
    knownKey: (kid) => keys.get(kid),
    async getKey(kid) {
      const cached = keys.get(kid);
      if (cached) return cached;
      if (!inFlight && now() - lastAttempt < minInterval) return undefined;
      await refresh().catch(() => undefined);
      return keys.get(kid);
    },
  };
}
