import { GatehouseError, NETWORK_ERROR, NO_SESSION, UNEXPECTED_RESPONSE } from './errors';
import { memoryTokenStore, type SessionTokens, type TokenStore } from './token-store';
import type {
  AdminUser,
  Board,
  ErrorBody,
  EventPage,
  ListEventsQuery,
  ListUsersQuery,
  MeResponse,
  MessageResponse,
  RoleName,
  SignInRequest,
  SignInResponse,
  SignUpRequest,
  TokenResponse,
  UserChangeResponse,
  UserPage,
} from './types';

export interface GatehouseClientOptions {
  /**
   * The gateway, e.g. `https://gatehouse.example.com` (no trailing slash needed). `''` calls
   * the page's own origin, for a browser app served by the gateway.
   */
  baseUrl: string;
  /** Where the session is kept; `memoryTokenStore()` by default. */
  store?: TokenStore;
  /** Defaults to the global `fetch`. */
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
  /**
   * Called when the session ended for good: a refresh was refused (expired, revoked or reused
   * refresh token, disabled user). The store has been cleared; the user has to sign in again.
   */
  onSessionEnded?: (error: GatehouseError) => void;
}

type Method = 'GET' | 'POST' | 'PUT';
type Query = Record<string, string | number | undefined>;

interface Call {
  method: Method;
  path: string;
  query?: Query;
  body?: unknown;
  /** Send the session's access token, and refresh and retry once when it is refused. */
  authenticated: boolean;
}

// The one code every refused access token gets (expired, revoked by a role change or a
// sign-out-all, signed by a removed key): the services do not say which, and a refresh is the
// answer to all of them. A missing token is 403 `auth.no_token`, which a refresh cannot fix.
const REFUSED_ACCESS_TOKEN = 'auth.invalid_token';

/**
 * True for a refused refresh that no later attempt can pass (the 403s of an expired, revoked or
 * reused refresh token or a disabled user; a 400). No answer, a timeout, a rate limit or a
 * server error keep the session for the next try.
 */
function endsSession(status: number): boolean {
  return status >= 400 && status < 500 && status !== 408 && status !== 429;
}

function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== 'object' || value === null) return false;
  const { message, code } = value as Record<string, unknown>;
  return typeof message === 'string' && typeof code === 'string';
}

function queryString(query: Query | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) if (value !== undefined) params.set(name, String(value));
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** The error for a response that is not a success. */
async function errorFrom(res: Response): Promise<GatehouseError> {
  const headerId = res.headers.get('x-request-id') ?? undefined;
  const text = await res.text().catch(() => '');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!isErrorBody(body)) {
    return new GatehouseError({
      status: res.status,
      code: UNEXPECTED_RESPONSE,
      message: `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`,
      requestId: headerId,
    });
  }
  return new GatehouseError({
    status: res.status,
    code: body.code,
    message: body.message,
    requestId: body.requestId ?? headerId,
    details: body.details,
  });
}

/**
 * A client for the Gatehouse API through its gateway, for Node.js 20 and browsers.
 *
 * It holds the session (access and refresh token) in its store: `signIn()` fills it,
 * `signOut()` and `signOutAll()` empty it, and every call that needs a token sends the
 * access token from it. When the services refuse that token with 401 `auth.invalid_token`
 * (it expired, or was revoked by a role change), the client refreshes the session once and
 * retries the call once; calls refused at the same moment share that one refresh, because a
 * refresh token is single-use and presenting it twice would end the session (reuse detection).
 *
 * Every failure is a `GatehouseError` with the service's `status`, `code`, `message` and
 * `requestId`.
 */
export class GatehouseClient {
  private readonly baseUrl: string;
  private readonly store: TokenStore;
  private readonly fetch: (input: string, init: RequestInit) => Promise<Response>;
  private readonly onSessionEnded?: (error: GatehouseError) => void;
  /** The refresh in flight, which every refused call waits for. */
  private refreshing: Promise<SessionTokens> | undefined;

  constructor(options: GatehouseClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.store = options.store ?? memoryTokenStore();
    // Called through a closure: a browser's fetch throws when called as another object's method.
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.onSessionEnded = options.onSessionEnded;
  }

  /** The current session's tokens, or null when signed out. */
  async session(): Promise<SessionTokens | null> {
    return this.store.get();
  }

  /** `POST /api/auth/signup`: creates a plain user. Does not sign in. */
  signUp(body: SignUpRequest): Promise<MessageResponse> {
    return this.json({ method: 'POST', path: '/api/auth/signup', body, authenticated: false });
  }

  /** `POST /api/auth/signin`: starts a session and keeps its tokens (replacing any previous session). */
  async signIn(body: SignInRequest): Promise<SignInResponse> {
    const result = await this.json<SignInResponse>({ method: 'POST', path: '/api/auth/signin', body, authenticated: false });
    await this.store.set({ accessToken: result.accessToken, refreshToken: result.refreshToken });
    return result;
  }

  /**
   * `POST /api/auth/refreshtoken`: exchanges the refresh token for new tokens now. Calls do this
   * by themselves when their token is refused; this is for refreshing ahead of time.
   */
  async refresh(): Promise<SessionTokens> {
    return this.sharedRefresh(() => true);
  }

  /**
   * `POST /api/auth/signout`: ends this session (its refresh token, so it works with an expired
   * access token too). The local session is forgotten whatever the outcome.
   */
  async signOut(): Promise<MessageResponse> {
    const session = await this.store.get();
    try {
      return await this.json({
        method: 'POST',
        path: '/api/auth/signout',
        body: session ? { refreshToken: session.refreshToken } : {},
        authenticated: false,
      });
    } finally {
      await this.store.set(null);
    }
  }

  /** `POST /api/auth/signout-all`: ends every session of the user and revokes their access tokens. */
  async signOutAll(): Promise<MessageResponse> {
    const result = await this.json<MessageResponse>({ method: 'POST', path: '/api/auth/signout-all', body: {}, authenticated: true });
    await this.store.set(null);
    return result;
  }

  /** `GET /api/auth/me`: the signed-in user, with roles as the database has them now. */
  me(): Promise<MeResponse> {
    return this.json({ method: 'GET', path: '/api/auth/me', authenticated: true });
  }

  /**
   * `GET /api/test/<board>`: the board's text (`User Content.`, …). Without the role, a
   * `GatehouseError` 403 `auth.missing_role` (`Require Moderator Role!`); signed out, 403
   * `auth.no_token`.
   */
  async board(board: Board): Promise<string> {
    const res = await this.send({ method: 'GET', path: `/api/test/${board}`, authenticated: true });
    return res.text();
  }

  /** `GET /api/auth/users` (admin): users matching `q`, a page at a time. */
  listUsers(query: ListUsersQuery = {}): Promise<UserPage> {
    return this.json({ method: 'GET', path: '/api/auth/users', query: { ...query }, authenticated: true });
  }

  /** `GET /api/auth/users/:id` (admin). */
  getUser(id: number): Promise<AdminUser> {
    return this.json({ method: 'GET', path: `/api/auth/users/${encodeURIComponent(id)}`, authenticated: true });
  }

  /** `PUT /api/auth/users/:id/roles` (admin): the user's roles become exactly `roles`. */
  setRoles(id: number, roles: RoleName[]): Promise<UserChangeResponse> {
    return this.json({ method: 'PUT', path: `/api/auth/users/${encodeURIComponent(id)}/roles`, body: { roles }, authenticated: true });
  }

  /** `POST /api/auth/users/:id/disable` (admin): also ends every session of the user. */
  disableUser(id: number): Promise<UserChangeResponse> {
    return this.json({ method: 'POST', path: `/api/auth/users/${encodeURIComponent(id)}/disable`, body: {}, authenticated: true });
  }

  /** `POST /api/auth/users/:id/enable` (admin). */
  enableUser(id: number): Promise<UserChangeResponse> {
    return this.json({ method: 'POST', path: `/api/auth/users/${encodeURIComponent(id)}/enable`, body: {}, authenticated: true });
  }

  /** `GET /api/auth/events` (admin): the audit log, newest first; page with `nextBefore`. */
  listEvents(query: ListEventsQuery = {}): Promise<EventPage> {
    return this.json({ method: 'GET', path: '/api/auth/events', query: { ...query }, authenticated: true });
  }

  /** Sends `call` and parses the JSON of its success. */
  private async json<T>(call: Call): Promise<T> {
    const res = await this.send(call);
    const text = await res.text();
    try {
      // The API's shapes are the types above; the services are what guarantees them.
      return JSON.parse(text) as T;
    } catch (cause) {
      throw new GatehouseError({
        status: res.status,
        code: UNEXPECTED_RESPONSE,
        message: `HTTP ${res.status}: the response is not JSON`,
        requestId: res.headers.get('x-request-id') ?? undefined,
        cause,
      });
    }
  }

  /** Sends `call`, refreshing and retrying once on a refused token; resolves with a 2xx response. */
  private async send(call: Call): Promise<Response> {
    const session = call.authenticated ? await this.store.get() : null;
    const res = await this.request(call, session?.accessToken);
    if (res.ok) return res;
    const error = await errorFrom(res);
    if (!session || error.status !== 401 || error.code !== REFUSED_ACCESS_TOKEN) throw error;
    // The refused call did nothing (authentication comes first on every route), so sending it
    // again is safe for a PUT or POST too.
    const refreshed = await this.sharedRefresh((current) => current.accessToken === session.accessToken);
    const retried = await this.request(call, refreshed.accessToken);
    if (retried.ok) return retried;
    throw await errorFrom(retried);
  }

  /**
   * The one refresh in flight, started when there is none. `needed` sees the stored session
   * when the refresh would start: a call whose token was refused after another call already
   * refreshed just takes the new tokens.
   */
  private sharedRefresh(needed: (current: SessionTokens) => boolean): Promise<SessionTokens> {
    // Assigned before any await, so calls refused at the same moment all find it.
    this.refreshing ??= (async () => {
      const current = await this.store.get();
      if (!current) throw new GatehouseError({ status: 0, code: NO_SESSION, message: 'Not signed in.' });
      return needed(current) ? this.exchange(current) : current;
    })().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** `POST /api/auth/refreshtoken` with `current`'s refresh token; stores and returns the new tokens. */
  private async exchange(current: SessionTokens): Promise<SessionTokens> {
    const call: Call = { method: 'POST', path: '/api/auth/refreshtoken', body: { refreshToken: current.refreshToken }, authenticated: false };
    let tokens: TokenResponse;
    try {
      tokens = await this.json<TokenResponse>(call);
    } catch (err) {
      if (!(err instanceof GatehouseError) || !endsSession(err.status)) throw err;
      // Refused for good: forget the session, unless a sign-in replaced it meanwhile.
      if ((await this.store.get())?.refreshToken === current.refreshToken) await this.store.set(null);
      this.onSessionEnded?.(err);
      throw err;
    }
    const next = { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken };
    const now = await this.store.get();
    // A sign-out or sign-in during the refresh wins: its session is the one to keep.
    if (now?.refreshToken !== current.refreshToken) {
      if (now) return now;
      throw new GatehouseError({ status: 0, code: NO_SESSION, message: 'Signed out during the refresh.' });
    }
    await this.store.set(next);
    return next;
  }

  /** One HTTP exchange; network failures become `client.network_error`. */
  private async request(call: Call, accessToken: string | undefined): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json, text/plain' };
    if (accessToken) headers.authorization = `Bearer ${accessToken}`;
    if (call.body !== undefined) headers['content-type'] = 'application/json';
    try {
      return await this.fetch(`${this.baseUrl}${call.path}${queryString(call.query)}`, {
        method: call.method,
        headers,
        body: call.body === undefined ? undefined : JSON.stringify(call.body),
      });
    } catch (cause) {
      throw new GatehouseError({
        status: 0,
        code: NETWORK_ERROR,
        message: `Could not reach ${this.baseUrl || 'the gateway'}: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause,
      });
    }
  }
}

/** A client for the gateway at `baseUrl` (see `GatehouseClient`). */
export function createClient(options: GatehouseClientOptions): GatehouseClient {
  return new GatehouseClient(options);
}
