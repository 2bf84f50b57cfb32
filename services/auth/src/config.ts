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
    DB_POOL_MAX: z.coerce.number().int().min(1).max(100).default(10),
    JWT_ISSUER: z.string().min(1).default('gatehouse'),
    JWT_AUDIENCE: z.string().min(1).default('gatehouse'),
    ACCESS_TOKEN_TTL: z.coerce.number().int().min(30).max(7 * 24 * 3600).default(900),
    BCRYPT_COST: z.coerce.number().int().min(4).max(15).default(10),
    LOG_LEVEL: logLevelVar,
  })
  .superRefine((env, ctx) => {
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
    issuer: parsed.JWT_ISSUER,
    audience: parsed.JWT_AUDIENCE,
    accessTokenTtlSeconds: parsed.ACCESS_TOKEN_TTL,
    bcryptCost: parsed.BCRYPT_COST,
    logLevel: parsed.LOG_LEVEL,
  });
}

export type AuthConfig = ReturnType<typeof loadConfig>;
