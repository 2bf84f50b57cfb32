import type Router from '@koa/router';
import type { RevocationFeed } from '@gatehouse/tokens';
import type { UserRepository } from '../../db/repositories/user.repository';

/**
 * `GET /internal/revocations`: the revocation feed the content service polls. For each user
 * whose tokens were revoked within one access-token lifetime (plus the verifiers' clock
 * tolerance), the lowest token version still valid. Older revocations only concern tokens that
 * have expired, so the feed stays as small as the revocations of the last few minutes.
 *
 * @remarks Not under `/api`, so the gateway does not route it: it is for the services behind it.
 */
export function revocationRoutes(
  router: Router,
  deps: { users: UserRepository; windowSeconds: number; clock: () => Date },
): void {
  router.get('/internal/revocations', async function revocationFeed(ctx) {
    const since = new Date(deps.clock().getTime() - deps.windowSeconds * 1000);
    const feed: RevocationFeed = { revocations: await deps.users.findRevocationsSince(since) };
    ctx.set('Cache-Control', 'no-store');
    ctx.body = feed;
  });
}
