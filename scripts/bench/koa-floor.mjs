/**
 * The benchmark's Koa floor: the least a Koa service can do to answer GET /api/test/mod, with
 * the Koa and @koa/router the content service runs. One route, which asks only that a token
 * header be there; no token check, request id, log, metrics, security headers or error bodies.
 * Run as a process of its own (plain JavaScript, no loader), like the proxy floor.
 *
 * The content service does everything this does and more, so its figures cannot beat these:
 * the `koa-mod` workload shows how much of content's cost the framework alone pays on the
 * machine of the run, and so what ratio to the baseline a Koa service can reach there at all.
 */
import { createRequire } from 'node:module';
import { URL } from 'node:url';

// The packages the content service depends on, resolved from its own package (the workspace
// root does not depend on them).
const fromContent = createRequire(new URL('../../services/content/package.json', import.meta.url));
const Koa = fromContent('koa');
const Router = fromContent('@koa/router');

const port = Number(process.env.PORT);
const router = new Router();
router.get('/api/test/all', (ctx) => {
  ctx.body = 'Public Content.';
});
router.get('/api/test/mod', (ctx) => {
  if (!ctx.get('authorization') && !ctx.get('x-access-token')) ctx.throw(403);
  ctx.body = 'Moderator Content.';
});
const app = new Koa();
app.use(router.routes());
const server = app.listen(port, '127.0.0.1');
server.keepAliveTimeout = 65_000;

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
