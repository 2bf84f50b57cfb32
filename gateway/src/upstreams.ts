import http from 'node:http';
import https from 'node:https';
import { repeatEvery, type Logger } from '@gatehouse/common';

/** The services behind the gateway; the name appears in error messages and logs. */
export type UpstreamName = 'auth' | 'content';

/** One instance of a service, as the gateway last saw it. */
export interface Upstream {
  /** Base URL (no trailing slash); the request path is appended unchanged. */
  readonly url: string;
  /** False from a failed health check or a refused connection until a check passes again. */
  healthy: boolean;
}

// Idle pooled sockets are closed well before the services' 65 s keepAliveTimeout (see
// startServer in @gatehouse/common): if the service closed first, the gateway could pick a
// socket at the very moment it is being closed and turn a healthy request into a 502.
const AGENT_IDLE_TIMEOUT_MS = 30_000;
// Per instance (an agent pools by host and port): enough for bursts without letting one slow
// instance eat every file descriptor.
const AGENT_MAX_SOCKETS = 256;
const AGENT_MAX_FREE_SOCKETS = 64;

/**
 * The keep-alive agent for a service's instances (all http, or all https).
 *
 * @remarks Whoever owns it calls `destroy()` at shutdown; idle sockets are unref'd by Node, so
 * a forgotten agent does not keep the process alive, but it keeps connections open.
 */
function createAgent(https_: boolean): http.Agent {
  const options: http.AgentOptions = {
    keepAlive: true,
    maxSockets: AGENT_MAX_SOCKETS,
    maxFreeSockets: AGENT_MAX_FREE_SOCKETS,
    timeout: AGENT_IDLE_TIMEOUT_MS,
    // Reuse the most recently used socket, so the surplus after a burst goes idle and is closed.
    scheduling: 'lifo',
  };
  return https_ ? new https.Agent(options) : new http.Agent(options);
}

/**
 * Resolves when `GET <url>/readyz` answers 200 within `timeoutMs`, through `agent`, so the
 * check exercises the same connection pool as real traffic.
 */
function checkReady(url: string, agent: http.Agent, timeoutMs: number): Promise<void> {
  const client = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    // `timeout` arms only once a socket is assigned; the signal also bounds the wait for one
    // while every pooled socket is busy with traffic.
    const req = client.get(`${url}/readyz`, { agent, timeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else reject(new Error(`${url}/readyz answered ${res.statusCode}`));
    });
    req.once('timeout', () => req.destroy(new Error(`${url}/readyz gave no answer within ${timeoutMs} ms`)));
    req.once('error', reject);
  });
}

export interface UpstreamPoolOptions {
  name: UpstreamName;
  /** One base URL per instance, all http or all https. */
  urls: readonly string[];
  /** How long a health check may take before the instance counts as failing. */
  checkTimeoutMs: number;
  logger: Logger;
}

/**
 * The instances of one service: round-robin over the healthy ones, with health kept by
 * {@link UpstreamPool.checkAll} (every instance's `/readyz`) and by {@link UpstreamPool.markDown}
 * when a connection is refused.
 *
 * When no instance is healthy, requests still go round the whole list: the service may be
 * back before the next check, and when it is not, the client gets the gateway's 502 at once
 * instead of a request held waiting.
 */
export class UpstreamPool {
  readonly name: UpstreamName;
  /** One keep-alive pool for every instance (Node's agent keeps sockets per host and port). */
  readonly agent: http.Agent;
  readonly members: readonly Upstream[];
  private readonly checkTimeoutMs: number;
  private readonly logger: Logger;
  private turn = 0;
  private stopChecking: (() => void) | undefined;
  private checking: Promise<void> | undefined;

  constructor(options: UpstreamPoolOptions) {
    if (options.urls.length === 0) throw new Error(`no ${options.name} instance to route to`);
    this.name = options.name;
    this.members = options.urls.map((url) => ({ url, healthy: true }));
    this.agent = createAgent(options.urls[0]!.startsWith('https:'));
    this.checkTimeoutMs = options.checkTimeoutMs;
    this.logger = options.logger;
  }

  /**
   * The next instance in turn among the healthy ones (all of them when none is), skipping
   * those in `tried`; undefined once every instance has been tried.
   */
  pick(tried?: ReadonlySet<Upstream>): Upstream | undefined {
    const members = this.members;
    if (members.length === 1) return tried?.has(members[0]!) ? undefined : members[0];
    let fallback: Upstream | undefined;
    for (let i = 0; i < members.length; i++) {
      const member = members[(this.turn + i) % members.length]!;
      if (tried?.has(member)) continue;
      if (member.healthy) {
        this.turn = (this.turn + i + 1) % members.length;
        return member;
      }
      fallback ??= member;
    }
    if (fallback !== undefined) this.turn = (members.indexOf(fallback) + 1) % members.length;
    return fallback;
  }

  /** Takes `member` out of rotation until a health check passes (a refused connection, say). */
  markDown(member: Upstream, reason: string): void {
    if (!member.healthy) return;
    member.healthy = false;
    this.logger.warn({ upstream: this.name, url: member.url, reason }, 'upstream instance out of rotation');
  }

  private markUp(member: Upstream): void {
    if (member.healthy) return;
    member.healthy = true;
    this.logger.info({ upstream: this.name, url: member.url }, 'upstream instance back in rotation');
  }

  /**
   * Checks every instance's `/readyz` at once and updates its health; resolves when at least one
   * is ready, rejects naming the failures when none is. The gateway's own `/readyz` uses it.
   */
  checkAll(): Promise<void> {
    // One round at a time: the periodic checks and every /readyz share the round under way, so
    // a slow instance cannot pile rounds up, and /readyz cannot be used to flood the services.
    this.checking ??= this.checkRound().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async checkRound(): Promise<void> {
    const results = await Promise.allSettled(
      this.members.map(async (member) => {
        try {
          await checkReady(member.url, this.agent, this.checkTimeoutMs);
        } catch (err) {
          this.markDown(member, err instanceof Error ? err.message : String(err));
          throw err;
        }
        this.markUp(member);
      }),
    );
    if (results.some((result) => result.status === 'fulfilled')) return;
    const reasons = results.map((result) => (result.status === 'rejected' ? String(result.reason) : ''));
    throw new Error(`no ${this.name} instance is ready: ${reasons.join('; ')}`);
  }

  /** Runs {@link checkAll} every `intervalMs` until {@link close}; 0 turns periodic checks off. */
  startChecking(intervalMs: number): void {
    if (intervalMs <= 0 || this.stopChecking !== undefined) return;
    this.stopChecking = repeatEvery(intervalMs, () => this.checkAll());
  }

  /** Stops the health checks and closes every pooled socket; in-flight requests on them fail. */
  close(): void {
    this.stopChecking?.();
    this.stopChecking = undefined;
    this.agent.destroy();
  }
}

/** The instances behind each route of the gateway. */
export type UpstreamPools = Record<UpstreamName, UpstreamPool>;

/**
 * Creates the pools for `config`'s upstreams and starts their periodic health checks.
 * The caller closes them at shutdown ({@link closeUpstreamPools}).
 */
export function createUpstreamPools(
  config: { authUrls: readonly string[]; contentUrls: readonly string[]; healthCheckMs: number; healthCheckTimeoutMs: number },
  logger: Logger,
): UpstreamPools {
  const common = { checkTimeoutMs: config.healthCheckTimeoutMs, logger };
  const pools: UpstreamPools = {
    auth: new UpstreamPool({ name: 'auth', urls: config.authUrls, ...common }),
    content: new UpstreamPool({ name: 'content', urls: config.contentUrls, ...common }),
  };
  pools.auth.startChecking(config.healthCheckMs);
  pools.content.startChecking(config.healthCheckMs);
  return pools;
}

/** Stops the pools' health checks and closes their sockets. */
export function closeUpstreamPools(pools: UpstreamPools): void {
  pools.auth.close();
  pools.content.close();
}
