/** What the API answers with one error `code`: its status, and its message where that is fixed. */
export interface ErrorSpec {
  status: number;
  /** The exact `message`, or a pattern when part of it varies (a role name, a field). */
  message: string | RegExp;
  /** Extra response headers that always come with this code. */
  headers?: readonly ResponseHeaderName[];
}

/** The response headers an error may carry: what they mean, and their values. */
export const RESPONSE_HEADERS = {
  'Retry-After': { description: 'Seconds to wait before trying again.', pattern: /^[1-9][0-9]*$/ },
  'WWW-Authenticate': {
    description: 'The access token was refused (RFC 6750).',
    pattern: /^Bearer error="invalid_token"$/,
  },
} as const;
export type ResponseHeaderName = keyof typeof RESPONSE_HEADERS;

/**
 * Every error `code` of the public API, with its status and message. Clients branch on `code`;
 * `message` is the tutorial's text where it has one, so its clients keep working.
 *
 * @remarks The OpenAPI document lists, for each operation and status, the codes it can answer
 * with, and the contract test (test/e2e/contract.e2e.test.ts) checks real answers against them.
 */
const CATALOGUE = {
  'request.invalid_input': { status: 400, message: /^Invalid input/ },
  'request.invalid_json': { status: 400, message: 'The request body is not valid JSON.' },
  'request.invalid_body': { status: 400, message: 'The request body could not be read.' },
  'request.too_large': { status: 413, message: 'The request body is too large.' },
  'request.unsupported_media_type': {
    status: 415,
    message: 'The request body must be JSON (Content-Type: application/json).',
  },
  'user.username_taken': { status: 400, message: 'Failed! Username is already in use!' },
  'user.email_taken': { status: 400, message: 'Failed! Email is already in use!' },
  'user.unknown_role': { status: 400, message: /^Failed! Role does not exist: / },
  'user.not_found': { status: 404, message: 'User not found.' },
  'user.last_admin': { status: 409, message: 'Cannot remove the last admin: make another user an admin first.' },
  'auth.invalid_credentials': { status: 401, message: 'Invalid username or password!' },
  'auth.invalid_token': { status: 401, message: 'Unauthorized!', headers: ['WWW-Authenticate'] },
  'auth.no_token': { status: 403, message: 'No token provided!' },
  'auth.missing_role': { status: 403, message: /^Require (User|Moderator|Admin) Role!$/ },
  'auth.user_disabled': { status: 403, message: 'User is disabled.' },
  'auth.refresh_token_unknown': { status: 403, message: 'Refresh token is not in database!' },
  'auth.refresh_token_expired': {
    status: 403,
    message: 'Refresh token was expired. Please make a new signin request',
  },
  'auth.refresh_token_revoked': {
    status: 403,
    message: 'Refresh token was revoked. Please make a new signin request',
  },
  'auth.refresh_token_reused': {
    status: 403,
    message: 'Refresh token was already used; the session has been ended. Please make a new signin request',
  },
  'auth.too_many_attempts': {
    status: 429,
    message: 'Too many failed sign-in attempts. Try again later.',
    headers: ['Retry-After'],
  },
  'gateway.rate_limited': { status: 429, message: 'Too many requests. Try again later.', headers: ['Retry-After'] },
  'gateway.upstream_unavailable': { status: 502, message: /^The (auth|content) service is unavailable\.$/ },
  'gateway.upstream_timeout': { status: 504, message: /^The (auth|content) service did not answer in time\.$/ },
  'service.unavailable': { status: 503, message: 'The service is temporarily unavailable. Try again shortly.' },
  'service.busy': { status: 503, message: 'The server is busy. Try again shortly.', headers: ['Retry-After'] },
  internal_error: { status: 500, message: 'Internal server error.' },
} satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof CATALOGUE;
export const ERRORS: Readonly<Record<ErrorCode, ErrorSpec>> = CATALOGUE;
