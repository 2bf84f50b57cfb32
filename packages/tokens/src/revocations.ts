import { z } from 'zod';
import { repeatEvery, type Logger } from '@gatehouse/common';
import type { AccessTokenClaims } from './claims';
import { createJsonGetter, urlList } from './fetch-json';

/**
 * The revocation feed the auth service publishes at `/internal/revocations`: for each user
 * whose tokens were revoked within the last access-token lifetime, the lowest token version
 * (`ver`) still valid. Older entries are dropped, because every token they could refuse has
 * expired anyway.
 */
export const revocationFeedSchema = z.object({
  revocations: z.array(z.object({ sub: z.string().min(1), ver: z.number().int().nonnegative() })),
});
export type RevocationFeed = z.infer<typeof revocationFeedSchema>;

/** Where the feed is and how to fetch it. */
export interface RevocationFeedClientOptions {
  /** The feed's address; with several auth instances, one per instance, tried in turn. */
  url: string | readonly string[];
  logger: Logger;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** The content service's in-memory copy of the revocation feed. */
export interface RevocationFeedClient {
  /** True when the token was issued before its user's tokens were revoked: one map lookup. */
  isRevoked(claims: Pick<AccessTokenClaims, 'sub' | 'ver'>): boolean;
  /** Fetches the feed now and replaces the list; on failure keeps the last one and throws. */
  refresh(): Promise<void>;
  /** Polls every `intervalMs` until the returned function is called. */
  start(intervalMs: number): () => void;
  /** True once one fetch has succeeded. */
  readonly loaded: boolean;
  /** How many users the list holds. */
  readonly size: number;
}

/**
 * The content service's copy of the revocation feed, polled from auth and kept in memory.
 *
 * @remarks Per request the cost is one `Map.get`. While auth is down the last list keeps
 * applying; it can only miss revocations made since, which is what the poll interval bounds.
 */
export function createRevocationFeedClient(options: RevocationFeedClientOptions): RevocationFeedClient {
  const timeoutMs = options.timeoutMs ?? 2_000;
  const urls = urlList(options.url);
  const getFeed = createJsonGetter('revocation feed', urls, timeoutMs, options.fetch);
  let minVersionBySub = new Map<string, number>();
  let loaded = false;
  let failing = false;
  let inFlight: Promise<void> | undefined;

  async function load(): Promise<void> {
    const feed = revocationFeedSchema.parse(await getFeed());
    minVersionBySub = new Map(feed.revocations.map((entry) => [entry.sub, entry.ver]));
    loaded = true;
    if (failing) options.logger.info({ urls }, 'revocation feed reachable again');
    failing = false;
  }

  function refresh(): Promise<void> {
    inFlight ??= load()
      .catch((err: unknown) => {
        // Warn once per outage, not once per poll.
        if (!failing) options.logger.warn({ err, urls }, 'could not fetch the revocation feed; keeping the last one');
        failing = true;
        throw err;
      })
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  }

  return {
    isRevoked(claims) {
      const minVersion = minVersionBySub.get(claims.sub);
      return minVersion !== undefined && claims.ver < minVersion;
    },
    refresh,
    start: (intervalMs) => repeatEvery(intervalMs, refresh),
    get loaded() {
      return loaded;
    },
    get size() {
      return minVersionBySub.size;
    },
  };
}
