import { z } from 'zod';
import { listVar, logLevelVar, parseEnv, portVar, urlListVar, workersVar } from '@gatehouse/common';

const DEFAULT_AUTH_URL = 'http://127.0.0.1:4001';
const DEFAULT_CONTENT_URL = 'http://127.0.0.1:4002';
const DEFAULT_CORS_ORIGINS = 'http://localhost:8081';
// Health checks and the gateway's own readiness must answer quickly, whatever the request
// timeout is.
const HEALTH_CHECK_TIMEOUT_MS = 2_000;

/** `http://host[:port]` exactly as a browser sends it in `Origin` (no path, no trailing slash). */
function isOrigin(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === value;
}

const schema = z
  .object({
    NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
    PORT: portVar(8080),
    HOST: z.string().min(1).default('127.0.0.1'),
    AUTH_URL: urlListVar(DEFAULT_AUTH_URL),
    CONTENT_URL: urlListVar(DEFAULT_CONTENT_URL),
    CORS_ORIGINS: listVar(DEFAULT_CORS_ORIGINS).pipe(
      z.array(
        z.string().refine(isOrigin, {
          error: 'must list browser origins such as https://app.example.com (scheme, host, port; no path or trailing /)',
        }),
      ),
    ),
    UPSTREAM_TIMEOUT_MS: z.coerce.number().int().min(1).max(600_000).default(10_000),
    HEALTH_CHECK_MS: z.coerce.number().int().min(0).max(600_000).default(2_000),
    AUTH_RATE_LIMIT: z.coerce.number().int().min(0).max(1_000_000).default(300),
    TRUST_PROXY: z.stringbool().default(false),
    WORKERS: workersVar,
    LOG_LEVEL: logLevelVar,
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV !== 'production') return;
    // The default upstreams point at one developer machine; in production they would send
    // traffic somewhere nobody chose, so each must be set on purpose. (The default CORS origin,
    // localhost:8081, trusts nothing beyond the operator's own machine, so it may stay.)
    const settings: [key: string, value: string[], fallback: string, example: string][] = [
      ['AUTH_URL', env.AUTH_URL, DEFAULT_AUTH_URL, 'http://auth:4001'],
      ['CONTENT_URL', env.CONTENT_URL, DEFAULT_CONTENT_URL, 'http://content:4002'],
    ];
    for (const [key, value, fallback, example] of settings) {
      if (value.join(',') !== fallback) continue;
      ctx.addIssue({ code: 'custom', path: [key], message: `must be set when NODE_ENV=production, e.g. ${example}` });
    }
  });

/** Reads the gateway's settings from `env`; throws one error listing every invalid variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env) {
  const parsed = parseEnv('gateway', schema, env);
  return Object.freeze({
    port: parsed.PORT,
    host: parsed.HOST,
    /** Base URLs of the auth instances (no trailing slash); `/api/auth/*` goes there. */
    authUrls: Object.freeze([...parsed.AUTH_URL]),
    /** Base URLs of the content instances (no trailing slash); `/api/test/*` goes there. */
    contentUrls: Object.freeze([...parsed.CONTENT_URL]),
    /** Browser origins allowed to call the API; any other origin gets no CORS headers. */
    corsOrigins: Object.freeze([...parsed.CORS_ORIGINS]),
    /** How long an upstream may stay silent before the gateway answers 504. */
    upstreamTimeoutMs: parsed.UPSTREAM_TIMEOUT_MS,
    /** Every instance's `/readyz` is checked this often (ms); 0 turns periodic checks off. */
    healthCheckMs: parsed.HEALTH_CHECK_MS,
    /** How long one health check may take before its instance counts as failing. */
    healthCheckTimeoutMs: Math.min(parsed.UPSTREAM_TIMEOUT_MS, HEALTH_CHECK_TIMEOUT_MS),
    /** Requests per minute one client IP may make to `/api/auth/*`; 0 turns the limit off. */
    authRateLimitPerMinute: parsed.AUTH_RATE_LIMIT,
    /**
     * Behind a load balancer or TLS terminator: take the client IP from the last
     * `X-Forwarded-For` hop and the scheme from `X-Forwarded-Proto` (for HSTS). Off when the
     * gateway is the edge, so clients cannot forge either.
     */
    trustProxy: parsed.TRUST_PROXY,
    /** Processes sharing the port (node:cluster); `WORKERS=auto` is one per core. */
    workers: parsed.WORKERS,
    logLevel: parsed.LOG_LEVEL,
  });
}

/** The gateway's settings, read once at start-up. */
export type GatewayConfig = ReturnType<typeof loadConfig>;
