import { z } from 'zod';
import { logLevelVar, parseEnv, portVar, urlListVar, workersVar } from '@gatehouse/common';

const schema = z.object({
  PORT: portVar(4002),
  HOST: z.string().min(1).default('127.0.0.1'),
  AUTH_URL: urlListVar('http://127.0.0.1:4001'),
  JWT_ISSUER: z.string().min(1).default('gatehouse'),
  JWT_AUDIENCE: z.string().min(1).default('gatehouse'),
  CLOCK_TOLERANCE_SECONDS: z.coerce.number().int().min(0).max(300).default(5),
  JWKS_MIN_REFETCH_MS: z.coerce.number().int().min(0).default(10_000),
  JWKS_REFRESH_MS: z.coerce.number().int().min(1_000).max(86_400_000).default(60_000),
  REVOCATION_POLL_MS: z.coerce.number().int().min(100).max(60_000).default(2_000),
  TOKEN_CACHE_SIZE: z.coerce.number().int().min(0).max(1_000_000).default(10_000),
  WORKERS: workersVar,
  LOG_LEVEL: logLevelVar,
});

/** Reads the content service's settings from `env`; throws listing every invalid variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env) {
  const parsed = parseEnv('content', schema, env);
  return Object.freeze({
    port: parsed.PORT,
    host: parsed.HOST,
    /** Where the auth instances publish their public keys; tried in turn. */
    jwksUrls: Object.freeze(parsed.AUTH_URL.map((url) => `${url}/.well-known/jwks.json`)),
    /** Where the auth instances publish the revocation feed (not routed by the gateway). */
    revocationsUrls: Object.freeze(parsed.AUTH_URL.map((url) => `${url}/internal/revocations`)),
    issuer: parsed.JWT_ISSUER,
    audience: parsed.JWT_AUDIENCE,
    clockToleranceSeconds: parsed.CLOCK_TOLERANCE_SECONDS,
    jwksMinRefetchMs: parsed.JWKS_MIN_REFETCH_MS,
    /** The JWKS is also refetched this often, so a key removed after a leak leaves the cache. */
    jwksRefreshMs: parsed.JWKS_REFRESH_MS,
    /** How often the revocation feed is polled: the longest a revoked token is still accepted. */
    revocationPollMs: parsed.REVOCATION_POLL_MS,
    /** Verified tokens remembered, so a repeated token skips the RSA check (0: none). */
    tokenCacheSize: parsed.TOKEN_CACHE_SIZE,
    /** Processes sharing the port (node:cluster); `WORKERS=auto` is one per core. */
    workers: parsed.WORKERS,
    logLevel: parsed.LOG_LEVEL,
  });
}

export type ContentConfig = ReturnType<typeof loadConfig>;
