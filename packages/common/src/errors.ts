/**
 * The one error model of Gatehouse. Routes and services throw these; `errorHandler()` is the
 * only place that turns them into a response body.
 *
 * `message` is what the tutorial's clients read; `code` (`area.reason`) is what new clients
 * branch on.
 */
export class AppError extends Error {
  readonly status: number;
  readonly code: string;
  readonly expose: boolean;
  readonly details?: unknown;
  /** Extra response headers, e.g. `WWW-Authenticate` on a 401. */
  readonly headers?: Record<string, string>;

  constructor(
    status: number,
    code: string,
    message: string,
    options: { details?: unknown; cause?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.expose = status < 500;
    this.details = options.details;
    this.headers = options.headers;
  }
}

type ErrorOptions = ConstructorParameters<typeof AppError>[3];

export class BadRequestError extends AppError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(400, code, message, options);
  }
}

export class UnauthorizedError extends AppError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(401, code, message, options);
  }
}

export class ForbiddenError extends AppError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(403, code, message, options);
  }
}

export class NotFoundError extends AppError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(404, code, message, options);
  }
}

export class ConflictError extends AppError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(409, code, message, options);
  }
}

export class ServiceUnavailableError extends AppError {
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(503, code, message, options);
  }
}

/**
 * Throws `error` unless `condition` holds; narrows the condition's type for the code after it.
 */
export function assertThat(condition: unknown, error: AppError): asserts condition {
  if (!condition) throw error;
}
