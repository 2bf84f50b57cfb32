import type Router from '@koa/router';
import type { Middleware } from 'koa';
import { requireRole } from '@gatehouse/tokens';

/** The tutorial's four boards: one public, three behind a token and a role. */
export function testRoutes(router: Router, { authenticate }: { authenticate: Middleware }): void {
  router.get('/api/test/all', function publicBoard(ctx) {
    ctx.body = 'Public Content.';
  });
  router.get('/api/test/user', authenticate, function userBoard(ctx) {
    ctx.body = 'User Content.';
  });
  router.get('/api/test/mod', authenticate, requireRole('moderator'), function moderatorBoard(ctx) {
    ctx.body = 'Moderator Content.';
  });
  router.get('/api/test/admin', authenticate, requireRole('admin'), function adminBoard(ctx) {
    ctx.body = 'Admin Content.';
  });
}
