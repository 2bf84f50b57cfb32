import type { z } from 'zod';
import {
  jwksResponse,
  meResponse,
  refreshBody,
  signInBody,
  signInResponse,
  signOutAllResponse,
  signOutBody,
  signOutResponse,
  signUpBody,
  signUpResponse,
  tokenResponse,
} from './auth.schema';
import { livenessResponse, readinessResponse, welcomeResponse } from './common.schema';
import { adminBoardText, moderatorBoardText, publicBoardText, userBoardText } from './content.schema';
import type { ErrorCode } from './errors';
import {
  adminUser,
  disableUserResponse,
  enableUserResponse,
  eventPage,
  listEventsQuery,
  listUsersQuery,
  setRolesBody,
  setRolesResponse,
  userPage,
  userParams,
} from './users.schema';

export type HttpMethod = 'get' | 'post' | 'put';

/** An error response: the error body, with one of these codes. */
export interface ErrorResponseSpec {
  description: string;
  errors: readonly ErrorCode[];
}

/** Error responses several operations share; the document puts them under `components.responses`. */
export const SHARED_RESPONSES = {
  InvalidToken: {
    description: 'The access token is malformed, badly signed, expired, revoked, or its user is disabled.',
    errors: ['auth.invalid_token'],
  },
  RateLimited: {
    description: "Over the gateway's per-IP limit on `/api/auth/*` (`AUTH_RATE_LIMIT` requests a minute).",
    errors: ['gateway.rate_limited'],
  },
  PayloadTooLarge: { description: 'The body is larger than 16 KiB.', errors: ['request.too_large'] },
  UnsupportedMediaType: { description: 'The body is not `application/json`.', errors: ['request.unsupported_media_type'] },
  InternalError: {
    description: 'An unexpected failure; the logs have it under the `requestId`. No internals are sent.',
    errors: ['internal_error'],
  },
  ServiceUnavailable: {
    description: 'The database is down or too slow to answer; try again shortly.',
    errors: ['service.unavailable'],
  },
  BadGateway: {
    description: 'The service behind the gateway is down or refused the connection.',
    errors: ['gateway.upstream_unavailable'],
  },
  GatewayTimeout: {
    description: 'The service behind the gateway did not answer within `UPSTREAM_TIMEOUT_MS`.',
    errors: ['gateway.upstream_timeout'],
  },
} as const satisfies Record<string, ErrorResponseSpec>;
export type SharedResponseName = keyof typeof SHARED_RESPONSES;

/** One documented answer of an operation. */
export type ResponseSpec =
  | { description: string; json: z.ZodType }
  | { description: string; text: z.ZodType }
  | ErrorResponseSpec
  | { shared: SharedResponseName };

/**
 * Who may call an operation. `signed-in` and the roles need an access token; `signed-in or
 * refresh token` also accepts a refresh token in the body instead.
 */
export type Access = 'anyone' | 'signed-in' | 'signed-in or refresh token' | 'moderator' | 'admin';

/** One operation of the public API, as the gateway serves it. */
export interface OperationSpec {
  method: HttpMethod;
  /** OpenAPI path template: `{id}` where the router has `:id`. */
  path: string;
  operationId: string;
  tag: 'auth' | 'admin' | 'content' | 'gateway';
  summary: string;
  description?: string;
  access: Access;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: { schema: z.ZodType; required: boolean };
  responses: Readonly<Partial<Record<number, ResponseSpec>>>;
}

const shared = (name: SharedResponseName): ResponseSpec => ({ shared: name });

// Every proxied route can meet a failing upstream or a bug.
const proxied = { 500: shared('InternalError'), 502: shared('BadGateway'), 504: shared('GatewayTimeout') } as const;
// Routes of the auth service: behind the gateway's rate limit, and in front of the database.
const authService = { ...proxied, 429: shared('RateLimited'), 503: shared('ServiceUnavailable') } as const;
// Routes that read a JSON body.
const jsonBody = { 413: shared('PayloadTooLarge'), 415: shared('UnsupportedMediaType') } as const;
const BAD_BODY: readonly ErrorCode[] = ['request.invalid_input', 'request.invalid_json', 'request.invalid_body'];
const invalidBody = (...more: ErrorCode[]): ErrorResponseSpec => ({
  description: 'The body is not JSON, or does not match the schema (`details` lists each problem).',
  errors: [...BAD_BODY, ...more],
});
const invalidInput: ErrorResponseSpec = {
  description: 'The path or query does not match the schema (`details` lists each problem).',
  errors: ['request.invalid_input'],
};
const noToken: ErrorResponseSpec = { description: 'No access token was sent.', errors: ['auth.no_token'] };
const forbiddenWithoutRole = (role: string): ErrorResponseSpec => ({
  description: `No access token was sent, or its roles lack \`${role}\`.`,
  errors: ['auth.no_token', 'auth.missing_role'],
});
// The admin API: a token with the admin role, checked before the input.
const adminOnly = { 401: shared('InvalidToken'), 403: forbiddenWithoutRole('admin') } as const;
const userNotFound: ErrorResponseSpec = { description: 'No user has this id.', errors: ['user.not_found'] };

/** Every operation of the public API: `/api/auth/*` (auth), `/api/test/*` (content), and the gateway's own. */
export const OPERATIONS: readonly OperationSpec[] = [
  {
    method: 'get',
    path: '/',
    operationId: 'welcome',
    tag: 'gateway',
    summary: "The tutorial's welcome message",
    access: 'anyone',
    responses: { 200: { description: 'The API is up.', json: welcomeResponse } },
  },
  {
    method: 'get',
    path: '/healthz',
    operationId: 'liveness',
    tag: 'gateway',
    summary: 'Liveness of the gateway',
    access: 'anyone',
    responses: { 200: { description: 'The gateway process is alive.', json: livenessResponse } },
  },
  {
    method: 'get',
    path: '/readyz',
    operationId: 'readiness',
    tag: 'gateway',
    summary: 'Readiness: both services answer their health check',
    access: 'anyone',
    responses: {
      200: { description: 'Auth and content are reachable.', json: readinessResponse },
      503: { description: 'A service behind the gateway is not reachable; `checks` says which.', json: readinessResponse },
    },
  },
  {
    method: 'post',
    path: '/api/auth/signup',
    operationId: 'signUp',
    tag: 'auth',
    summary: 'Register a user',
    description: 'The new user has the `user` role, whatever `roles` says.',
    access: 'anyone',
    body: { schema: signUpBody, required: true },
    responses: {
      201: { description: 'Registered.', json: signUpResponse },
      400: invalidBody('user.username_taken', 'user.email_taken', 'user.unknown_role'),
      ...jsonBody,
      ...authService,
      503: {
        description: 'The database is unavailable, or the password checks are saturated; try again shortly.',
        errors: ['service.unavailable', 'service.busy'],
      },
    },
  },
  {
    method: 'post',
    path: '/api/auth/signin',
    operationId: 'signIn',
    tag: 'auth',
    summary: 'Sign in: an access token and a refresh token',
    description:
      'Starts a session. One answer for an unknown user and a wrong password. Repeated failures for an account or ' +
      'from an address lock further attempts for a while (429, before the password is checked).',
    access: 'anyone',
    body: { schema: signInBody, required: true },
    responses: {
      200: { description: 'Signed in.', json: signInResponse },
      400: invalidBody(),
      401: { description: 'Unknown user or wrong password.', errors: ['auth.invalid_credentials'] },
      403: { description: 'The password is right, but the user is disabled.', errors: ['auth.user_disabled'] },
      ...jsonBody,
      ...authService,
      429: {
        description: "Too many failed attempts for this account or address, or over the gateway's per-IP limit.",
        errors: ['auth.too_many_attempts', 'gateway.rate_limited'],
      },
      503: {
        description: 'The database is unavailable, or the password checks are saturated; try again shortly.',
        errors: ['service.unavailable', 'service.busy'],
      },
    },
  },
  {
    method: 'post',
    path: '/api/auth/refreshtoken',
    operationId: 'refreshToken',
    tag: 'auth',
    summary: 'Exchange a refresh token for new tokens',
    description:
      'Retires the presented refresh token. Presenting a retired one again ends its whole session (reuse detection), ' +
      'unless `REFRESH_REUSE_INTERVAL` allows it, in which case the same successor is returned.',
    access: 'anyone',
    body: { schema: refreshBody, required: true },
    responses: {
      200: { description: 'New tokens; the presented refresh token is retired.', json: tokenResponse },
      400: invalidBody(),
      403: {
        description: 'The refresh token cannot be used: sign in again.',
        errors: [
          'auth.refresh_token_unknown',
          'auth.refresh_token_expired',
          'auth.refresh_token_revoked',
          'auth.refresh_token_reused',
          'auth.user_disabled',
        ],
      },
      ...jsonBody,
      ...authService,
    },
  },
  {
    method: 'post',
    path: '/api/auth/signout',
    operationId: 'signOut',
    tag: 'auth',
    summary: 'End this session',
    description:
      "Ends the session of the refresh token in the body, or else the access token's session. Needs no access token " +
      "when a refresh token is sent, so a client whose access token expired can still sign out. The session's current " +
      'access token stays valid until it expires.',
    access: 'signed-in or refresh token',
    body: { schema: signOutBody, required: false },
    responses: {
      200: { description: 'Signed out (also when the refresh token was already unknown).', json: signOutResponse },
      400: invalidBody(),
      401: shared('InvalidToken'),
      403: { description: 'Neither a refresh token nor an access token was sent.', errors: ['auth.no_token'] },
      ...jsonBody,
      ...authService,
    },
  },
  {
    method: 'post',
    path: '/api/auth/signout-all',
    operationId: 'signOutAll',
    tag: 'auth',
    summary: 'End every session of the caller',
    description: 'Ends every refresh token of the user and revokes every access token issued so far.',
    access: 'signed-in',
    responses: {
      200: { description: 'Every session ended.', json: signOutAllResponse },
      401: shared('InvalidToken'),
      403: noToken,
      ...authService,
    },
  },
  {
    method: 'get',
    path: '/api/auth/me',
    operationId: 'me',
    tag: 'auth',
    summary: "The caller's profile",
    access: 'signed-in',
    responses: {
      200: { description: 'The user the access token belongs to.', json: meResponse },
      401: shared('InvalidToken'),
      403: noToken,
      ...authService,
    },
  },
  {
    method: 'get',
    path: '/api/auth/users',
    operationId: 'listUsers',
    tag: 'admin',
    summary: 'List users',
    access: 'admin',
    query: listUsersQuery,
    responses: {
      200: { description: 'One page of users, by id.', json: userPage },
      400: invalidInput,
      ...adminOnly,
      ...authService,
    },
  },
  {
    method: 'get',
    path: '/api/auth/users/{id}',
    operationId: 'getUser',
    tag: 'admin',
    summary: 'One user',
    access: 'admin',
    params: userParams,
    responses: {
      200: { description: 'The user.', json: adminUser },
      400: invalidInput,
      ...adminOnly,
      404: userNotFound,
      ...authService,
    },
  },
  {
    method: 'put',
    path: '/api/auth/users/{id}/roles',
    operationId: 'setUserRoles',
    tag: 'admin',
    summary: "Replace a user's roles",
    description: "Revokes the user's access tokens, so the new roles apply at once. Audited.",
    access: 'admin',
    params: userParams,
    body: { schema: setRolesBody, required: true },
    responses: {
      200: { description: 'The roles were replaced.', json: setRolesResponse },
      400: invalidBody('user.unknown_role'),
      ...adminOnly,
      404: userNotFound,
      409: { description: 'This would leave no active admin.', errors: ['user.last_admin'] },
      ...jsonBody,
      ...authService,
    },
  },
  {
    method: 'post',
    path: '/api/auth/users/{id}/disable',
    operationId: 'disableUser',
    tag: 'admin',
    summary: 'Disable a user',
    description: 'Ends every session of the user and revokes every access token. Audited.',
    access: 'admin',
    params: userParams,
    responses: {
      200: { description: 'The user is disabled (or already was).', json: disableUserResponse },
      400: invalidInput,
      ...adminOnly,
      404: userNotFound,
      409: { description: 'This would leave no active admin.', errors: ['user.last_admin'] },
      ...authService,
    },
  },
  {
    method: 'post',
    path: '/api/auth/users/{id}/enable',
    operationId: 'enableUser',
    tag: 'admin',
    summary: 'Enable a disabled user',
    description: 'Audited.',
    access: 'admin',
    params: userParams,
    responses: {
      200: { description: 'The user is enabled (or already was).', json: enableUserResponse },
      400: invalidInput,
      ...adminOnly,
      404: userNotFound,
      ...authService,
    },
  },
  {
    method: 'get',
    path: '/api/auth/events',
    operationId: 'listEvents',
    tag: 'admin',
    summary: 'The audit log',
    description: 'Newest first, a page at a time: pass `nextBefore` as `before` for the next page.',
    access: 'admin',
    query: listEventsQuery,
    responses: {
      200: { description: 'One page of events.', json: eventPage },
      400: invalidInput,
      ...adminOnly,
      ...authService,
    },
  },
  {
    method: 'get',
    path: '/api/auth/.well-known/jwks.json',
    operationId: 'jwks',
    tag: 'auth',
    summary: 'The public signing keys (JWKS)',
    description: 'Every key that signs, will soon sign, or signed tokens that may not have expired yet. Cacheable for 60 s.',
    access: 'anyone',
    responses: {
      200: { description: 'The key set.', json: jwksResponse },
      ...authService,
    },
  },
  {
    method: 'get',
    path: '/api/test/all',
    operationId: 'publicBoard',
    tag: 'content',
    summary: 'The public board',
    access: 'anyone',
    responses: { 200: { description: 'Plain text.', text: publicBoardText }, ...proxied },
  },
  {
    method: 'get',
    path: '/api/test/user',
    operationId: 'userBoard',
    tag: 'content',
    summary: 'The board of signed-in users',
    access: 'signed-in',
    responses: {
      200: { description: 'Plain text.', text: userBoardText },
      401: shared('InvalidToken'),
      403: noToken,
      ...proxied,
    },
  },
  {
    method: 'get',
    path: '/api/test/mod',
    operationId: 'moderatorBoard',
    tag: 'content',
    summary: "The moderators' board",
    access: 'moderator',
    responses: {
      200: { description: 'Plain text.', text: moderatorBoardText },
      401: shared('InvalidToken'),
      403: forbiddenWithoutRole('moderator'),
      ...proxied,
    },
  },
  {
    method: 'get',
    path: '/api/test/admin',
    operationId: 'adminBoard',
    tag: 'content',
    summary: "The admins' board",
    access: 'admin',
    responses: {
      200: { description: 'Plain text.', text: adminBoardText },
      401: shared('InvalidToken'),
      403: forbiddenWithoutRole('admin'),
      ...proxied,
    },
  },
];
