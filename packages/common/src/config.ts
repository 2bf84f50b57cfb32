import { z } from 'zod';

/**
 * Parses `env` with `schema` and returns a frozen, typed config, or throws one error that
 * lists every invalid variable, so start-up fails once with everything to fix. A variable set
 * to the empty string counts as unset (`DATABASE_URL=` in a shell or an env file).
 */
export function parseEnv<S extends z.ZodType>(service: string, schema: S, env: NodeJS.ProcessEnv): Readonly<z.output<S>> {
  const result = schema.safeParse(Object.fromEntries(Object.entries(env).filter(([, value]) => value !== '')));
  if (!result.success) {
    const lines = result.error.issues.map((issue) => `  - ${issue.path.join('.') || '(env)'}: ${issue.message}`);
    throw new Error(`Invalid configuration for ${service}:\n${lines.join('\n')}`);
  }
  return Object.freeze(result.data);
}

/** An env var holding a TCP port; 0 asks the OS for a free one. */
export const portVar = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });
const withoutTrailingSlash = (url: string) => url.replace(/\/+$/, '');

/** An env var holding an http(s) URL, without a trailing slash. */
export const urlVar = (fallback: string) => httpUrl.default(fallback).transform(withoutTrailingSlash);

/** An env var holding a comma-separated list. */
export const listVar = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((value) =>
      value
        .split(',')
        .map((item) => item.trim())
        .filter(Boolean),
    );

/**
 * A comma-separated list of http(s) URLs, each without its trailing slashes; at least one, and
 * all of one scheme (one connection pool serves them all).
 */
export const urlListVar = (fallback: string) =>
  listVar(fallback).pipe(
    z
      .array(httpUrl.transform(withoutTrailingSlash))
      .min(1, { error: 'must list at least one http(s) URL' })
      .refine((urls) => new Set(urls.map((url) => new URL(url).protocol)).size === 1, {
        error: 'must not mix http and https URLs',
      }),
  );

export const logLevelVar = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info');
