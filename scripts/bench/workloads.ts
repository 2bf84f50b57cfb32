/**
 * The fixed workloads of the benchmark: what each one sends, where, and which processes do the
 * work. Each is a list of autocannon requests that every connection cycles through.
 */
import type autocannon from 'autocannon';
import { refreshTokenIn, type Account } from './accounts';

/** Every workload, in the order a run measures them. `baseline` is always measured first. */
export const WORKLOAD_NAMES = [
  'baseline',
  'content-all',
  'content-user',
  'content-mod',
  'koa-mod',
  'gateway-all',
  'gateway-user',
  'gateway-mod',
  'floor-mod',
  'signin',
  'signup',
  'refresh',
  'mixed',
] as const;

/** The name of one workload. */
export type WorkloadName = (typeof WORKLOAD_NAMES)[number];

/** True when `name` is a workload's name. */
export function isWorkloadName(name: string): name is WorkloadName {
  return WORKLOAD_NAMES.some((known) => known === name);
}

/** The processes the benchmark measures. */
export const PROCESS_NAMES = ['baseline', 'floor', 'koa', 'gateway', 'content', 'auth'] as const;

/** The name of one measured process. */
export type ProcessName = (typeof PROCESS_NAMES)[number];

/** One workload, ready to run. */
export interface Workload {
  name: WorkloadName;
  /** One line for people: what is requested, where. */
  title: string;
  /** The processes that serve it: their CPU is what the workload costs. */
  servedBy: readonly ProcessName[];
  /** Base URL autocannon connects to. */
  url: string;
  /** A fresh request sequence for one autocannon run (autocannon keeps state on the objects). */
  requests(): autocannon.Request[];
  /** Runs before each autocannon run (warm-up and measured), outside the measured window. */
  prepare?(connections: number): Promise<void>;
  /** Probe auth's `/healthz` at a low rate while this workload runs, and report its latency. */
  probesAuthHealth?: boolean;
}

/**
 * Refresh tokens for the refresh workloads. Each token works once: a request takes one, and
 * the successor in a 200 response goes back in, so the pool only shrinks by the requests cut
 * off at the end of a run or refused. The sessions should belong to many users (see
 * `createBenchAccounts`).
 */
export class RefreshTokenPool {
  private readonly tokens: string[] = [];

  /** @param signIn starts a new session and resolves with its refresh token. */
  constructor(private readonly signIn: () => Promise<string>) {}

  /** Tokens ready to use. */
  get size(): number {
    return this.tokens.length;
  }

  /** A token to present; undefined when the pool is empty. */
  take(): string | undefined {
    return this.tokens.pop();
  }

  /** Puts back the successor a refresh returned. */
  give(token: string): void {
    this.tokens.push(token);
  }

  /**
   * Signs in until the pool holds `count` tokens, `concurrency` sign-ins at a time.
   *
   * @remarks A connection holds one token at a time, so `count` ≥ connections keeps a run from
   * running dry.
   */
  async fillTo(count: number, concurrency = 4): Promise<void> {
    const signInOne = async (): Promise<void> => {
      while (this.tokens.length < count) {
        this.tokens.push(await this.signIn());
      }
    };
    await Promise.all(Array.from({ length: concurrency }, signInOne));
  }
}

/** What the workloads of one run need. */
export interface WorkloadContext {
  urls: { baseline: string; floor: string; koa: string; content: string; gateway: string; auth: string };
  /** Access tokens of a plain user and of a moderator, fresh for this run. */
  userToken: string;
  moderatorToken: string;
  /** The account the sign-in workloads sign in with. */
  signinAccount: Pick<Account, 'username' | 'password'>;
  refreshTokens: RefreshTokenPool;
  /** A new, unique sign-up body on every call. */
  nextSignup(): Account;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function refreshRequest(pool: RefreshTokenPool): autocannon.Request {
  return {
    method: 'POST',
    path: '/api/auth/refreshtoken',
    headers: JSON_HEADERS,
    // An empty pool (more refreshes refused than expected) shows up as non-2xx answers.
    setupRequest: (request) => ({ ...request, body: JSON.stringify({ refreshToken: pool.take() ?? 'refresh-pool-ran-dry' }) }),
    onResponse: (status, body) => {
      const successor = status === 200 ? refreshTokenIn(parseJson(body)) : undefined;
      if (successor) pool.give(successor);
    },
  };
}

/** The workloads of one run, with that run's tokens. */
export function buildWorkloads(ctx: WorkloadContext): Workload[] {
  const userGet = (path: string): autocannon.Request => ({ method: 'GET', path, headers: { 'x-access-token': ctx.userToken } });
  const moderatorGet = (path: string): autocannon.Request => ({
    method: 'GET',
    path,
    headers: { authorization: `Bearer ${ctx.moderatorToken}` },
  });
  const signin: autocannon.Request = {
    method: 'POST',
    path: '/api/auth/signin',
    headers: JSON_HEADERS,
    body: JSON.stringify({ username: ctx.signinAccount.username, password: ctx.signinAccount.password }),
  };
  const fillRefreshPool = (connections: number) => ctx.refreshTokens.fillTo(connections + 10);

  return [
    {
      name: 'baseline',
      title: 'bare node:http JSON hello world',
      servedBy: ['baseline'],
      url: ctx.urls.baseline,
      requests: () => [{ method: 'GET', path: '/' }],
    },
    ...(['all', 'user', 'mod'] as const).flatMap((board): Workload[] => {
      const { request, who } = {
        all: { request: (): autocannon.Request => ({ method: 'GET', path: '/api/test/all' }), who: 'no token' },
        user: { request: () => userGet('/api/test/user'), who: 'user token' },
        mod: { request: () => moderatorGet('/api/test/mod'), who: 'moderator token' },
      }[board];
      return [
        {
          name: `content-${board}`,
          title: `GET /api/test/${board} (${who}) at content directly`,
          servedBy: ['content'],
          url: ctx.urls.content,
          requests: () => [request()],
        },
        {
          name: `gateway-${board}`,
          title: `GET /api/test/${board} (${who}) through the gateway`,
          servedBy: ['gateway', 'content'],
          url: ctx.urls.gateway,
          requests: () => [request()],
        },
      ];
    }),
    {
      name: 'koa-mod',
      title: 'GET /api/test/mod (moderator token) at a bare Koa app with @koa/router: the floor of any Koa service',
      servedBy: ['koa'],
      url: ctx.urls.koa,
      requests: () => [moderatorGet('/api/test/mod')],
    },
    {
      name: 'floor-mod',
      title: 'GET /api/test/mod (moderator token) through a bare node:http proxy: the floor of any gateway',
      servedBy: ['floor', 'content'],
      url: ctx.urls.floor,
      requests: () => [moderatorGet('/api/test/mod')],
    },
    {
      name: 'signin',
      title: 'POST /api/auth/signin (one user) through the gateway',
      servedBy: ['gateway', 'auth'],
      url: ctx.urls.gateway,
      requests: () => [{ ...signin }],
      probesAuthHealth: true,
    },
    {
      name: 'signup',
      title: 'POST /api/auth/signup (a new user each) through the gateway',
      servedBy: ['gateway', 'auth'],
      url: ctx.urls.gateway,
      requests: () => [
        {
          method: 'POST',
          path: '/api/auth/signup',
          headers: JSON_HEADERS,
          setupRequest: (request) => ({ ...request, body: JSON.stringify(ctx.nextSignup()) }),
        },
      ],
    },
    {
      name: 'refresh',
      title: 'POST /api/auth/refreshtoken (each token once) through the gateway',
      servedBy: ['gateway', 'auth'],
      url: ctx.urls.gateway,
      requests: () => [refreshRequest(ctx.refreshTokens)],
      prepare: fillRefreshPool,
    },
    {
      name: 'mixed',
      title: '80% /api/test/user, 10% /api/test/mod, 5% sign-in, 5% refresh through the gateway',
      servedBy: ['gateway', 'content', 'auth'],
      url: ctx.urls.gateway,
      // 20 requests per cycle: 16 user, 2 moderator, 1 sign-in, 1 refresh, spread out. The first
      // must not be the refresh (autocannon builds it before the run starts).
      requests: () => {
        const users = (count: number) => Array.from({ length: count }, () => userGet('/api/test/user'));
        return [
          ...users(4),
          moderatorGet('/api/test/mod'),
          ...users(4),
          { ...signin },
          ...users(4),
          moderatorGet('/api/test/mod'),
          ...users(4),
          refreshRequest(ctx.refreshTokens),
        ];
      },
      prepare: fillRefreshPool,
    },
  ];
}
