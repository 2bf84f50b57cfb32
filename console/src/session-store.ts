import type { SessionTokens, TokenStore } from '@gatehouse/client';

const KEY = 'gatehouse.session';

function isSession(value: unknown): value is SessionTokens {
  if (typeof value !== 'object' || value === null) return false;
  const { accessToken, refreshToken } = value as Record<string, unknown>;
  return typeof accessToken === 'string' && typeof refreshToken === 'string';
}

function read(storage: Storage): SessionTokens | null {
  try {
    const value: unknown = JSON.parse(storage.getItem(KEY) ?? 'null');
    return isSession(value) ? { accessToken: value.accessToken, refreshToken: value.refreshToken } : null;
  } catch {
    return null;
  }
}

/**
 * The console's session: in memory, written through to `sessionStorage`.
 *
 * Why both: the client reads the tokens from memory on every call; `sessionStorage` only lets
 * a reload (or coming back to the page in the same tab) keep the session.
 *
 * Why `sessionStorage` and not `localStorage` or a cookie: it belongs to one tab and ends with
 * it. A refresh token is single-use, and presenting a used one ends the session (reuse
 * detection), so two tabs sharing one stored token through `localStorage` would each refresh
 * it and sign each other out; each tab here signs in by itself instead. It also does not
 * outlive the tab on a shared machine. A cookie would send the token with every request and
 * need CSRF protection; the API takes tokens in a header. Script injected into the page could
 * read the tokens wherever they are kept: what stops that is the CSP (scripts from this origin
 * only, nothing inline) and building the page with text nodes only (see `h()`).
 */
export function sessionTokenStore(storage: Storage): TokenStore {
  let session = read(storage);
  return {
    get: () => session,
    set(next) {
      session = next;
      try {
        if (next) storage.setItem(KEY, JSON.stringify(next));
        else storage.removeItem(KEY);
      } catch {
        // Storage full or disabled (some private modes): the session lives in memory only.
      }
    },
  };
}
