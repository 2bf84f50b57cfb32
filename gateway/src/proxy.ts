import http from 'node:http';
import https from 'node:https';
import type { Middleware } from 'koa';
import { createProxyMiddleware, type Plugin } from 'http-proxy-middleware';
import { REQUEST_ID_HEADER, type Logger } from '@gatehouse/common';

/** The services behind the gateway; the name appears in error messages and logs. */
export type UpstreamName = 'auth' | 'content';

/** One keep-alive connection pool per upstream. */
export type UpstreamAgents = Record<UpstreamName, http.Agent>;

// Idle pooled sockets are closed well before the services' 65 s keepAliveTimeout (see
// startServer in @gatehouse/common): if the service closed first, the gateway could pick a
// socket at the very moment it is being closed and turn a healthy request into a 502.
const AGENT_IDLE_TIMEOUT_MS = 30_000;
// Enough for bursts without letting one slow upstream eat every file descriptor.
const AGENT_MAX_SOCKETS = 256;
const AGENT_MAX_FREE_SOCKETS = 64;

/**
 * Creates the keep-alive agent for an upstream at `url` (http or https).
 *
 * @remarks The caller owns it and calls `destroy()` at shutdown; idle sockets are unref'd by
 * Node, so a forgotten agent does not keep the process alive, but it keeps connections open.
 */
export function createUpstreamAgent(url: string): http.Agent {
  const options: http.AgentOptions = {
    keepAlive: true,
    maxSockets: AGENT_MAX_SOCKETS,
    maxFreeSockets: AGENT_MAX_FREE_SOCKETS,
    timeout: AGENT_IDLE_TIMEOUT_MS,
    // Reuse the most recently used socket, so the surplus after a burst goes idle and is closed.
    scheduling: 'lifo',
  };
  return url.startsWith('https:') ? new https.Agent(options) : new http.Agent(options);
}

/** Creates the agents for both upstreams of `config`. */
export function createUpstreamAgents(config: { authUrl: string; contentUrl: string }): UpstreamAgents {
  return { auth: createUpstreamAgent(config.authUrl), content: createUpstreamAgent(config.contentUrl) };
}

/** Closes every pooled socket of `agents`; in-flight requests on them fail. */
export function destroyUpstreamAgents(agents: UpstreamAgents): void {
  agents.auth.destroy();
  agents.content.destroy();
}

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

/** One upstream as `proxyTo` needs it. */
export interface ProxyOptions {
  name: UpstreamName;
  /** Base URL; the request path is appended unchanged. */
  target: string;
  agent: http.Agent;
  /** How long the upstream may stay silent (connecting, or between bytes) before a 504. */
  timeoutMs: number;
  logger: Logger;
}

/**
 * Koa middleware that streams the request to `target` (path unchanged, body not parsed) and
 * the upstream's answer back to the client, status, headers and body untouched.
 *
 * Errors before the upstream answered become JSON 502 `gateway.upstream_unavailable` (refused,
 * reset, unknown host) or 504 `gateway.upstream_timeout` (silent for `timeoutMs`); after the
 * answer started, the client connection is cut so a truncated body never looks complete.
 *
 * @remarks The response bypasses Koa (`ctx.respond = false`), so it must be the last
 * middleware for the requests it handles. Build it once per upstream: it owns an http-proxy
 * server and its event listeners.
 */
export function proxyTo(options: ProxyOptions): Middleware {
  const { name, timeoutMs, logger } = options;
  const unavailable = `The ${name} service is unavailable.`;
  const tooSlow = `The ${name} service did not answer in time.`;

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

    proxyServer.on('proxyRes', (proxyRes, _req, res) => {
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
      if (res.headersSent) {
        logger.warn({ err, upstream: name, requestId }, 'upstream failed mid-answer; client connection cut');
        res.destroy();
        return;
      }
      const timedOut = err instanceof UpstreamTimeoutError;
      const status = timedOut ? 504 : 502;
      logger.error({ err, upstream: name, requestId, status }, 'upstream request failed');
      if (timedOut) sendError(res, status, 'gateway.upstream_timeout', tooSlow, requestId);
      else sendError(res, status, 'gateway.upstream_unavailable', unavailable, requestId);
    });
  };

  const proxy = createProxyMiddleware({
    target: options.target,
    agent: options.agent,
    // `Connection` is hop-by-hop: a client's `Connection: close` must not close the pooled
    // upstream socket.
    headers: { connection: 'keep-alive' },
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

/**
 * Resolves when `GET <url>/healthz` answers 200 within `timeoutMs`, through the proxy's own
 * `agent` so readiness exercises the same connection pool as real traffic.
 */
export function checkUpstream(url: string, agent: http.Agent, timeoutMs: number): Promise<void> {
  const client = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.get(`${url}/healthz`, { agent, timeout: timeoutMs }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else reject(new Error(`${url}/healthz answered ${res.statusCode}`));
    });
    req.once('timeout', () => req.destroy(new Error(`${url}/healthz gave no answer within ${timeoutMs} ms`)));
    req.once('error', reject);
  });
}
