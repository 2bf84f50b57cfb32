import type Router from '@koa/router';
import type { Middleware } from 'koa';
import type { KeyStore } from '../../services/signing-keys';

/** The public signing keys, at the well-known path and under `/api/auth` for the gateway. */
export function jwksRoutes(router: Router, { keys }: { keys: KeyStore }): void {
  const serveJwks: Middleware = async function serveJwks(ctx) {
    // Short, so that a key removed after a leak leaves caches soon.
    ctx.set('Cache-Control', 'public, max-age=60');
    ctx.body = await keys.publicJwks();
  };
  router.get('/.well-known/jwks.json', serveJwks);
  router.get('/api/auth/.well-known/jwks.json', serveJwks);
}
