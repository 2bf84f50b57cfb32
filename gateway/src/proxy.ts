import http from 'node:http';
import type { Middleware } from 'koa';
import { createProxyMiddleware, type Plugin } from 'http-proxy-middleware';
import { REQUEST_ID_HEADER, type Logger } from '@gatehouse/common';
import type { Upstream, UpstreamPool } from './upstreams';

/** Why a proxied request was cut: the upstream stayed silent too long. */
class UpstreamTimeoutError extends Error {}

/** The JSON error body, shaped like the common errorHandler's `ErrorBody`. */
function sendError(
  res: http.ServerResponse,
  status: number,
  code: string,
  message: string,
  requestId: string | undefined,
): void {
  const body = JSON.stringify({ message, code, requestId });
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** The id the gateway's middleware put on the request before handing it over. */
function requestIdOf(req: http.IncomingMessage): string | undefined {
  const id = req.headers[REQUEST_ID_HEADER];
  return typeof id === 'string' ? id : undefined;
}

/** A service's instances as `proxyTo` needs them. */
export interface ProxyOptions {
  pool: UpstreamPool;
  /** How long an instance may stay silent (connecting, or between bytes) before a 504. */
  timeoutMs: number;
  logger: Logger;
}

// Errors that mean the instance could not be reached at all: it is taken out of rotation.
const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

function errorCode(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * True when `req` can be sent again to another instance after `err`: a GET or HEAD without a
 * body (nothing to replay, and safe to repeat) that failed before any answer, for a reason
 * other than our timeout (the instance may still be working on it).
 */
function canRetry(req: http.IncomingMessage, err: unknown): boolean {
  if (err instanceof UpstreamTimeoutError) return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0');
}

/**
 * Koa middleware that streams the request to one of `pool`'s instances, round-robin over the
 * healthy ones (path unchanged, body not parsed), and the answer back to the client, status,
 * headers and body untouched.
 *
 * An instance that refuses the connection is taken out of rotation until a health check
 * passes. A GET or HEAD that fails before any answer is tried once on each other instance.
 * Otherwise errors before the answer become JSON 502 `gateway.upstream_unavailable` (refused,
 * reset, unknown host) or 504 `gateway.upstream_timeout` (silent for `timeoutMs`); after the
 * answer started, the client connection is cut so a truncated body never looks complete.
 *
 * @remarks The response bypasses Koa (`ctx.respond = false`), so it must be the last
 * middleware for the requests it handles. Build it once per service: it owns an http-proxy
 * server and its event listeners.
 */
export function proxyTo(options: ProxyOptions): Middleware {
  const { pool, timeoutMs, logger } = options;
  const name = pool.name;
  const unavailable = `The ${name} service is unavailable.`;
  const tooSlow = `The ${name} service did not answer in time.`;
  // Per request: the instances tried so far, the last one first in line for blame.
  // `answered`: the current instance's status and headers reached `res` (http-proxy copies them
  // before the first body byte, so `res.headersSent` alone would still say false).
  const attempts = new WeakMap<http.IncomingMessage, { current: Upstream; tried: Set<Upstream>; answered: boolean }>();
  const requestOptions = {
    agent: pool.agent,
    // `Connection` is hop-by-hop: a client's `Connection: close` must not close the pooled
    // upstream socket.
    headers: { connection: 'keep-alive' },
  };

  /** The instance for a new request; every instance is a candidate, so there always is one. */
  function route(req: http.IncomingMessage): string {
    const current = pool.pick()!;
    attempts.set(req, { current, tried: new Set([current]), answered: false });
    return current.url;
  }

  const guardExchange: Plugin = (proxyServer) => {
    proxyServer.on('proxyReq', (proxyReq, _req, res) => {
      // The client left while the request waited for a pooled socket.
      if (res.destroyed) {
        proxyReq.destroy();
        return;
      }
      // Our own timeout rather than http-proxy's `proxyTimeout`, which aborts with the same
      // ECONNRESET as a real reset, so a 504 could not be told apart from a 502.
      proxyReq.setTimeout(timeoutMs, () => proxyReq.destroy(new UpstreamTimeoutError(`no answer within ${timeoutMs} ms`)));
      // setTimeout() only arms once connected; bound the connect too (a blackholed address
      // would otherwise wait for the OS, minutes).
      const socket = proxyReq.socket;
      if (socket?.connecting) socket.setTimeout(timeoutMs);
      // http-proxy only aborts when the request body is cut; a client that leaves while waiting
      // for the answer (or while it streams) must free the upstream socket too.
      res.once('close', () => {
        if (!res.writableFinished) proxyReq.destroy();
      });
    });

    proxyServer.on('proxyRes', (proxyRes, req, res) => {
      const attempt = attempts.get(req);
      if (attempt !== undefined) attempt.answered = true;
      // Koa never sends it; keep it that way whatever the service behind us runs on.
      if (proxyRes.headers['x-powered-by'] !== undefined) delete proxyRes.headers['x-powered-by'];
      // An upstream that dies mid-body ends its side without an error on the request; without
      // this the client would wait forever for the rest of a half-sent response.
      proxyRes.once('close', () => {
        if (!proxyRes.complete) res.destroy();
      });
    });

    proxyServer.on('error', (err, req, res) => {
      // Only http requests reach here (no websockets), but http-proxy's type allows a socket.
      if (!(res instanceof http.ServerResponse)) {
        res.destroy();
        return;
      }
      // The client already left (its request was cut on purpose): nobody to answer.
      if (res.destroyed) return;
      const requestId = requestIdOf(req);
      const attempt = attempts.get(req);
      const url = attempt?.current.url;
      const code = errorCode(err);
      // An instance already out of rotation that refuses again is old news: the pool logged
      // when it left, so each of the requests that still try it (none healthy) is not an error.
      const known = attempt !== undefined && !attempt.current.healthy && code !== undefined && UNREACHABLE.has(code);
      if (attempt !== undefined && code !== undefined && UNREACHABLE.has(code)) pool.markDown(attempt.current, code);
      if (res.headersSent || attempt?.answered) {
        logger.warn({ err, upstream: name, url, requestId }, 'upstream failed mid-answer; client connection cut');
        res.destroy();
        return;
      }
      const next = attempt !== undefined && canRetry(req, err) ? pool.pick(attempt.tried) : undefined;
      if (attempt !== undefined && next !== undefined) {
        logger.warn({ err, upstream: name, url, retry: next.url, requestId }, 'upstream request failed; trying another instance');
        attempt.current = next;
        attempt.tried.add(next);
        proxyServer.web(req, res, { ...requestOptions, target: next.url });
        return;
      }
      const timedOut = err instanceof UpstreamTimeoutError;
      const status = timedOut ? 504 : 502;
      if (known) logger.debug({ code, upstream: name, url, requestId, status }, 'upstream instance still refusing');
      else logger.error({ err, upstream: name, url, requestId, status }, 'upstream request failed');
      if (timedOut) sendError(res, status, 'gateway.upstream_timeout', tooSlow, requestId);
      else sendError(res, status, 'gateway.upstream_unavailable', unavailable, requestId);
    });
  };

  const proxy = createProxyMiddleware({
    ...requestOptions,
    // Required by http-proxy-middleware alongside a router; `route` picks the real one.
    target: pool.members[0]!.url,
    router: route,
    // The default plugins log through console, attach debug listeners to every request and
    // answer errors in plain text; ours does all that is needed.
    ejectPlugins: true,
    plugins: [guardExchange],
  });

  return function proxyRequest(ctx) {
    ctx.respond = false;
    // Same id in the upstream's logs as in ours (the upstream keeps a well-formed incoming id).
    const headers = ctx.req.headers;
    headers[REQUEST_ID_HEADER] = ctx.state.requestId;
    // The client as the gateway sees it (with TRUST_PROXY, as the proxy in front saw it): one
    // address and one scheme, replacing whatever the client sent, so that auth, which trusts
    // the last hop, gets the real client and never the gateway's own load balancer.
    headers['x-forwarded-for'] = ctx.ip;
    headers['x-forwarded-proto'] = ctx.protocol;
    // Node has already answered `100 Continue` to the client. Forwarded, the header would also
    // make http-proxy skip its `proxyReq` event, and with it the timeout and the disconnect guard.
    if (headers.expect !== undefined) delete headers.expect;
    return proxy(ctx.req, ctx.res);
  };
}
