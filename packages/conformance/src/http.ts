/** A response read in full: status, headers, the raw text and, when it parses, the JSON body. */
export interface HttpResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON; undefined when it is not JSON. */
  json: unknown;
  /** Wall-clock time from sending the request to reading the whole body, in milliseconds. */
  elapsedMs: number;
}

/** What to send besides the method and path. */
export interface RequestOptions {
  headers?: Record<string, string>;
  /** A value sent as JSON (`content-type: application/json`). */
  json?: unknown;
  /** A raw body, sent as is with `contentType` (for malformed JSON and non-JSON bodies). */
  body?: string;
  /** Content type of `body`; defaults to `application/json`. */
  contentType?: string;
  /**
   * Wait and retry when the gateway's own rate limit answers (429 `gateway.rate_limited`), so
   * that a deployment with a strict limit does not fail unrelated checks. On by default; the
   * rate-limit check and timing measurements turn it off.
   */
  retryRateLimited?: boolean;
}

const REQUEST_TIMEOUT_MS = 10_000;
// A longer Retry-After than this means the caller is blocked for a while: report the 429.
const MAX_RATE_LIMIT_WAIT_S = 30;
const MAX_RATE_LIMIT_RETRIES = 3;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The `code` of a JSON error body, if it has one. */
export function codeOf(res: HttpResponse): unknown {
  return isRecord(res.json) ? res.json.code : undefined;
}

/** True for a plain JSON object (not an array, not null). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `Retry-After` as whole seconds, or undefined when absent or not a non-negative integer. */
export function retryAfterSeconds(res: HttpResponse): number | undefined {
  const raw = res.headers.get('retry-after');
  if (raw === null || !/^\d+$/.test(raw.trim())) return undefined;
  return Number(raw.trim());
}

/** `401 {"message":"…"}`, shortened, for failure reasons. */
export function describeResponse(res: HttpResponse): string {
  const body = res.text.length > 160 ? `${res.text.slice(0, 160)}…` : res.text;
  const described = `${res.status} ${body.replace(/\s+/g, ' ').trim() || '(empty body)'}`;
  // An unexpected 429 is almost always about this client, not the check: say so.
  if (res.status !== 429) return described;
  const retryAfter = retryAfterSeconds(res);
  const wait = retryAfter === undefined ? '' : ` for ${retryAfter} s`;
  return `${described} (this client's address is throttled${wait}; an earlier run from the same address may have used up its failed sign-ins)`;
}

/** The network error's own code (ECONNREFUSED, …) rather than undici's bare "fetch failed". */
function describeNetworkError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.name === 'TimeoutError') return `no answer within ${REQUEST_TIMEOUT_MS} ms`;
  const cause: unknown = err.cause;
  if (cause instanceof Error) {
    const code = 'code' in cause && typeof cause.code === 'string' ? cause.code : cause.message;
    return `${err.message} (${code})`;
  }
  return err.message;
}

/**
 * Sends one request to `base` + `path` and reads the whole answer. Never follows redirects (a
 * redirect is an answer to check, not to chase). Throws only when no answer came.
 */
export async function sendRequest(base: string, method: string, path: string, options: RequestOptions = {}): Promise<HttpResponse> {
  const headers: Record<string, string> = { ...options.headers };
  let body: string | undefined;
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers['content-type'] = 'application/json';
  } else if (options.body !== undefined) {
    body = options.body;
    headers['content-type'] = options.contentType ?? 'application/json';
  }

  for (let attempt = 0; ; attempt++) {
    const started = performance.now();
    let response: Response;
    let text: string;
    try {
      // Appended rather than resolved, so a base with a path prefix keeps it.
      response = await fetch(`${base.replace(/\/+$/, '')}${path}`, {
        method,
        headers,
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      text = await response.text();
    } catch (err) {
      throw new Error(`${method} ${path}: ${describeNetworkError(err)}`);
    }
    const res: HttpResponse = {
      status: response.status,
      headers: response.headers,
      text,
      json: parseJson(text),
      elapsedMs: performance.now() - started,
    };
    const wait = res.status === 429 && codeOf(res) === 'gateway.rate_limited' ? retryAfterSeconds(res) : undefined;
    const retry = options.retryRateLimited !== false && attempt < MAX_RATE_LIMIT_RETRIES;
    if (!retry || wait === undefined || wait > MAX_RATE_LIMIT_WAIT_S) return res;
    await sleep(Math.max(wait, 1) * 1000);
  }
}
