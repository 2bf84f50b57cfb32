import type { Middleware } from 'koa';
import { AppError, clientKey } from '@gatehouse/common';

export interface RateLimitOptions {
  /** Requests one client IP may make per window. */
  limit: number;
  windowMs: number;
  /** Injected for tests; milliseconds since the epoch. */
  now?: () => number;
  /** Counting stops beyond this many distinct IPs in one window, so memory stays bounded. */
  maxClients?: number;
  /** Called on each refusal (the gateway counts them in `gatehouse_rate_limited_total`). */
  onLimited?: () => void;
}

/**
 * A fixed-window request limit per client IP, kept in this process's memory: the gateway's
 * first line against floods of sign-in attempts. The auth service's per-account and per-IP
 * sign-in throttling, kept in the database, is what holds across instances.
 *
 * @remarks Each window starts with an empty map, so memory is bounded by `maxClients`. IPv6
 * clients are counted by their /64 (one host usually holds a whole /64). The limit is per
 * gateway process: with `WORKERS=n`, a client gets up to n times the limit.
 */
export function rateLimitPerIp(options: RateLimitOptions): Middleware {
  const now = options.now ?? Date.now;
  const maxClients = options.maxClients ?? 100_000;
  let windowStart = 0;
  let counts = new Map<string, number>();

  return async function limitRequests(ctx, next) {
    const at = now();
    if (at - windowStart >= options.windowMs) {
      windowStart = at - ((at - windowStart) % options.windowMs);
      counts = new Map();
    }
    // Beyond maxClients distinct clients in one window, the rest share one count: a flood of
    // spoofed or IPv6 addresses then limits itself instead of passing uncounted.
    const key = clientKey(ctx.ip);
    const client = counts.has(key) || counts.size < maxClients ? key : 'overflow';
    const count = (counts.get(client) ?? 0) + 1;
    if (count <= options.limit + 1) counts.set(client, count);
    if (count > options.limit) {
      options.onLimited?.();
      const retryAfter = Math.max(1, Math.ceil((windowStart + options.windowMs - at) / 1000));
      throw new AppError(429, 'gateway.rate_limited', 'Too many requests. Try again later.', {
        headers: { 'Retry-After': String(retryAfter) },
      });
    }
    await next();
  };
}
