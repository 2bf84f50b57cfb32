/** What the client keeps of a session: the tokens of the last sign-in or refresh. */
export interface SessionTokens {
  accessToken: string;
  refreshToken: string;
}

/**
 * Where the client keeps the session. `set(null)` forgets it. Either method may be
 * asynchronous, for stores backed by something that is.
 *
 * @remarks The refresh token is rotated on every refresh and the previous one is then dead
 * (presenting it again ends the session), so a store must keep what it was given last, and two
 * clients must not share a store unless they also share one client (its refresh is shared).
 */
export interface TokenStore {
  get(): SessionTokens | null | Promise<SessionTokens | null>;
  set(session: SessionTokens | null): void | Promise<void>;
}

/** The default store: the session lives as long as the client object. */
export function memoryTokenStore(initial: SessionTokens | null = null): TokenStore {
  let session = initial;
  return {
    get: () => session,
    set(next) {
      session = next;
    },
  };
}
