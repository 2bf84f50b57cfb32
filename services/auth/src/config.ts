import { availableParallelism } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { logLevelVar, parseEnv, portVar } from '@gatehouse/common';

const schema = z
  .object({
    NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
    PORT: portVar(4001),
    HOST: z.string().min(1).default('127.0.0.1'),
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL, e.g. postgres://user:pass@host:5432/gatehouse')
      .optional(),
    DATA_DIR: z.string().min(1).default('.data'),
    // At least 2: starting up, one connection holds the migrations lock while knex migrates on another.
    DB_POOL_MAX: z.coerce.number().int().min(2, { error: 'must be at least 2 (one connection holds the migrations lock at start)' }).max(100).default(10),
    DB_ACQUIRE_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(3_000),
    DB_STATEMENT_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(5_000),
    JWT_ISSUER: z.string().min(1).default('gatehouse'),
    JWT_AUDIENCE: z.string().min(1).default('gatehouse'),
    ACCESS_TOKEN_TTL: z.coerce.number().int().min(30).max(7 * 24 * 3600).default(900),
    BCRYPT_COST: z.coerce.number().int().min(4).max(15).default(10),
    BCRYPT_THREADS: z.coerce.number().int().min(0).max(64).default(availableParallelism()),
    BCRYPT_MAX_WAIT_MS: z.coerce.number().int().min(1).max(600_000).default(3_000),
    REFRESH_TOKEN_TTL: z.coerce.number().int().min(60).max(365 * 24 * 3600).default(7 * 24 * 3600),
    REFRESH_REUSE_INTERVAL: z.coerce.number().int().min(0).max(60).default(0),
    // At most a minute: a rotated-out key stays published only 300 s past the token lifetime,
    // and an instance must stop signing with it well before.
    SIGNING_KEY_RELOAD_MS: z.coerce.number().int().min(100).max(60_000).default(5_000),
    TRUST_PROXY: z.stringbool().default(true),
    SIGNIN_MAX_FAILURES: z.coerce.number().int().min(0).max(1000).default(5),
    SIGNIN_MAX_FAILURES_PER_IP: z.coerce.number().int().min(1).max(1_000_000).default(50),
    SIGNIN_LOCK_MAX_SECONDS: z.coerce.number().int().min(1).max(86_400).default(900),
    ADMIN_USERNAME: z.string().optional(),
    ADMIN_EMAIL: z.string().optional(),
    ADMIN_PASSWORD: z.string().optional(),
    LOG_LEVEL: logLevelVar,
  })
  .superRefine((env, ctx) => {
    // ADMIN_PASSWORD alone is how the CLI's create-admin takes a password; a username or an
    // email alone is a half-configured bootstrap admin.
    const bootstrap = [env.ADMIN_USERNAME, env.ADMIN_EMAIL, env.ADMIN_PASSWORD];
    if ((env.ADMIN_USERNAME ?? env.ADMIN_EMAIL) !== undefined && bootstrap.includes(undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['ADMIN_USERNAME'],
        message: 'ADMIN_USERNAME, ADMIN_EMAIL and ADMIN_PASSWORD go together: set all three to create the first admin',
      });
    }
    if (env.NODE_ENV === 'production' && !env.DATABASE_URL) {
      ctx.addIssue({
        code: 'custom',
        path: ['DATABASE_URL'],
        message: 'is required when NODE_ENV=production (the embedded database is for local use only)',
      });
    }
  });

/** Reads the auth service's settings from `env`; throws listing every invalid variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env) {
  const parsed = parseEnv('auth', schema, env);
  return Object.freeze({
    port: parsed.PORT,
    host: parsed.HOST,
    /** PostgreSQL server; when absent, the embedded PGlite database under `dataDir`. */
    databaseUrl: parsed.DATABASE_URL,
    /** PGlite's data directory (`memory://` keeps it in memory). */
    dataDir: parsed.DATA_DIR.startsWith('memory://') ? parsed.DATA_DIR : path.resolve(parsed.DATA_DIR, 'pglite'),
    poolMax: parsed.DB_POOL_MAX,
    acquireTimeoutMs: parsed.DB_ACQUIRE_TIMEOUT_MS,
    statementTimeoutMs: parsed.DB_STATEMENT_TIMEOUT_MS,
    issuer: parsed.JWT_ISSUER,
    audience: parsed.JWT_AUDIENCE,
    accessTokenTtlSeconds: parsed.ACCESS_TOKEN_TTL,
    bcryptCost: parsed.BCRYPT_COST,
    /** Worker threads hashing passwords; 0 hashes on the event loop's thread. */
    bcryptThreads: parsed.BCRYPT_THREADS,
    /**
     * How long a password check may wait for a bcrypt thread before a 503 `service.busy`. A
     * sign-up waits at most twice, so twice this stays below the gateway's `UPSTREAM_TIMEOUT_MS`
     * (10 s): an overloaded sign-up is refused, not written after the gateway gave up.
     */
    bcryptMaxWaitMs: parsed.BCRYPT_MAX_WAIT_MS,
    refreshTokenTtlSeconds: parsed.REFRESH_TOKEN_TTL,
    /** Seconds in which a rotated refresh token presented again returns the same successor; 0 = off. */
    refreshReuseIntervalSeconds: parsed.REFRESH_REUSE_INTERVAL,
    /** How often each instance rereads the signing keys, so a rotation reaches it. */
    signingKeyReloadMs: parsed.SIGNING_KEY_RELOAD_MS,
    /** Read the client's address from the last `X-Forwarded-For` hop, which the gateway adds. */
    trustProxy: parsed.TRUST_PROXY,
    /** Brute-force protection of sign-in; `maxFailures` 0 turns it off. */
    signinThrottle: {
      maxFailures: parsed.SIGNIN_MAX_FAILURES,
      maxFailuresPerIp: parsed.SIGNIN_MAX_FAILURES_PER_IP,
      windowSeconds: 15 * 60,
      maxLockSeconds: parsed.SIGNIN_LOCK_MAX_SECONDS,
    },
    /** The first admin, created at start when no user has this username; never overwritten. */
    bootstrapAdmin:
      parsed.ADMIN_USERNAME && parsed.ADMIN_EMAIL && parsed.ADMIN_PASSWORD
        ? { username: parsed.ADMIN_USERNAME, email: parsed.ADMIN_EMAIL, password: parsed.ADMIN_PASSWORD }
        : undefined,
    logLevel: parsed.LOG_LEVEL,
  });
}

export type AuthConfig = ReturnType<typeof loadConfig>;
