// The requests and responses of the public API as the gateway serves it, written from the
// routes that produce them (services/auth/src/routes/**, services/content/src/routes/**).

/** A role as the admin API and the access token's `roles` claim name it. */
export type RoleName = 'user' | 'moderator' | 'admin';
/** A role as sign-in and `/me` spell it, the tutorial's way. */
export type Authority = 'ROLE_USER' | 'ROLE_MODERATOR' | 'ROLE_ADMIN';
/** The four boards under `/api/test/`: public, then user, moderator and admin only. */
export type Board = 'all' | 'user' | 'mod' | 'admin';

/** The audit log's event types (`EVENT_TYPES` in the auth service). */
export type EventType =
  | 'user.signup'
  | 'user.roles_changed'
  | 'user.disabled'
  | 'user.enabled'
  | 'admin.created'
  | 'signin.success'
  | 'signin.failure'
  | 'token.refresh'
  | 'token.reuse_detected'
  | 'signout'
  | 'signout.all'
  | 'key.rotated';

/** The body of every error response. */
export interface ErrorBody {
  message: string;
  code: string;
  details?: unknown;
  requestId?: string;
}

/** Every success that only says what happened. */
export interface MessageResponse {
  message: string;
}

/** `POST /api/auth/signup`. Sign-up never grants roles; `roles` is only checked to exist. */
export interface SignUpRequest {
  username: string;
  email: string;
  password: string;
  roles?: string[];
}

/** `POST /api/auth/signin`. */
export interface SignInRequest {
  username: string;
  password: string;
}

/** The tokens of a sign-in or a refresh. */
export interface TokenResponse {
  accessToken: string;
  refreshToken: string;
  tokenType: 'Bearer';
  /** Seconds the access token lives. */
  expiresIn: number;
}

/** The signed-in user as sign-in and `/me` present them. */
export interface Profile {
  id: number;
  username: string;
  email: string;
  roles: Authority[];
}

/** `POST /api/auth/signin` → 200. */
export interface SignInResponse extends Profile, TokenResponse {}

/** `GET /api/auth/me` → 200. */
export interface MeResponse extends Profile {
  /** ISO 8601. */
  createdAt: string;
}

/** A user as the admin API presents them. */
export interface AdminUser {
  id: number;
  username: string;
  email: string;
  roles: RoleName[];
  disabled: boolean;
  /** ISO 8601. */
  createdAt: string;
}

/** `GET /api/auth/users` query. */
export interface ListUsersQuery {
  /** Part of a username or email. */
  q?: string;
  /** 1 … 100, default 20. */
  limit?: number;
  /** Default 0. */
  offset?: number;
}

/** `GET /api/auth/users` → 200. */
export interface UserPage {
  users: AdminUser[];
  total: number;
  limit: number;
  offset: number;
}

/** `PUT /api/auth/users/:id/roles` and `POST …/disable|enable` → 200. */
export interface UserChangeResponse {
  message: string;
  user: AdminUser;
}

/** An audit-log entry. */
export interface AuthEvent {
  id: number;
  type: EventType;
  /** The user the event is about. */
  userId: number | null;
  /** The admin who did it, when not the user themself. */
  actorId: number | null;
  ip: string | null;
  userAgent: string | null;
  details: Record<string, unknown> | null;
  /** ISO 8601. */
  createdAt: string;
}

/** `GET /api/auth/events` query. */
export interface ListEventsQuery {
  userId?: number;
  type?: EventType;
  /** The `nextBefore` of the previous page. */
  before?: number;
  /** 1 … 200, default 50. */
  limit?: number;
}

/** `GET /api/auth/events` → 200, newest first. */
export interface EventPage {
  events: AuthEvent[];
  /** The `before` of the next page; null on the last one. */
  nextBefore: number | null;
}
