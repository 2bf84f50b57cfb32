/**
 * Every failure the client reports. `code` is what to branch on: the service's `area.reason`
 * code (`auth.missing_role`, `auth.refresh_token_reused`, …), or one of the client's own
 * `client.*` codes when no service answered with one.
 */
export class GatehouseError extends Error {
  /** The HTTP status; 0 when no response arrived (`client.network_error`, `client.no_session`). */
  readonly status: number;
  readonly code: string;
  /** The gateway's request id, to find the request in the services' logs. */
  readonly requestId?: string;
  /** Extra detail the service sent, e.g. the invalid fields of a 400 `request.invalid_input`. */
  readonly details?: unknown;

  constructor(init: { status: number; code: string; message: string; requestId?: string; details?: unknown; cause?: unknown }) {
    super(init.message, { cause: init.cause });
    this.name = 'GatehouseError';
    this.status = init.status;
    this.code = init.code;
    this.requestId = init.requestId;
    this.details = init.details;
  }
}

/** The request never got an answer (connection refused, DNS, CORS refusal, aborted). */
export const NETWORK_ERROR = 'client.network_error';
/** A response that is not what the API sends (not JSON where JSON was due, no error body). */
export const UNEXPECTED_RESPONSE = 'client.unexpected_response';
/** A call that needs the session, such as `refresh()`, made while signed out. */
export const NO_SESSION = 'client.no_session';
