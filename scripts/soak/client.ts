/**
 * The soak's HTTP client and its bookkeeping: every request is timed and recorded under its
 * kind with the statuses the soak's model of the service expected for it.
 */

/** The kinds of request the soak sends, in the order the summary lists them. */
export const KINDS = [
  'signup',
  'signin',
  'signin-wrong',
  'lockout',
  'refresh',
  'refresh-reuse',
  'roles',
  'read-user',
  'read-mod',
  'read-admin',
  'me',
  'bad-input',
] as const;

/** One kind of request. */
export type Kind = (typeof KINDS)[number];

/** What a request got back. `status` 0: no answer (connection error or timeout). */
export interface Answer {
  status: number;
  body: unknown;
  ms: number;
  /** Why there was no answer, when `status` is 0. */
  error?: string;
}

/** A request to send. */
export interface Call {
  method: 'GET' | 'POST' | 'PUT';
  path: string;
  /** Sent as JSON. */
  json?: unknown;
  /** Sent as it is (for the malformed bodies), with `contentType`. */
  raw?: string;
  contentType?: string;
  token?: string;
}

/** A request that got a status the model did not expect, kept for the report. */
export interface Surprise {
  kind: Kind;
  what: string;
  status: number;
  expected: number[];
  /** The start of the answer's body, or the connection error. */
  answer: string;
}

/** The figures of one kind. */
export interface KindStats {
  kind: Kind;
  requests: number;
  statuses: Record<string, number>;
  /** Answers with a status not in the expected set (connection errors included). */
  unexpected: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Requests slower than this are abandoned and count as having no answer. */
const REQUEST_TIMEOUT_MS = 15_000;
/** Surprises kept in full for the report; the rest are only counted. */
const SURPRISES_KEPT = 30;

/** Sends `call` to `baseUrl` and times it; never throws. */
export async function send(baseUrl: string, call: Call): Promise<Answer> {
  const headers: Record<string, string> = {};
  let body: string | undefined;
  if (call.json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(call.json);
  }
  if (call.raw !== undefined) {
    headers['content-type'] = call.contentType ?? 'application/json';
    body = call.raw;
  }
  if (call.token !== undefined) headers.authorization = `Bearer ${call.token}`;
  const started = performance.now();
  try {
    const res = await fetch(`${baseUrl}${call.path}`, {
      method: call.method,
      headers,
      body,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await res.text();
    return { status: res.status, body: parseJson(text) ?? text, ms: performance.now() - started };
  } catch (err) {
    const error = err instanceof Error ? `${err.name}: ${err.message}${causeOf(err)}` : String(err);
    return { status: 0, body: undefined, ms: performance.now() - started, error };
  }
}

function causeOf(err: Error): string {
  return err.cause instanceof Error ? ` (${err.cause.message})` : '';
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** `body[key]`, when `body` is an object that has that key. */
export function valueAt(body: unknown, key: string): unknown {
  return typeof body === 'object' && body !== null && key in body ? Reflect.get(body, key) : undefined;
}

/** The `q`-quantile (0..1) of ascending `sorted`, nearest rank; NaN when empty. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}

const round1 = (ms: number) => Math.round(ms * 10) / 10;

/** Counts, statuses and latencies of every request, by kind, and what surprised the model. */
export class Recorder {
  private readonly latencies = new Map<Kind, number[]>();
  private readonly statuses = new Map<Kind, Record<string, number>>();
  private readonly unexpectedByKind = new Map<Kind, number>();
  readonly surprises: Surprise[] = [];
  surpriseCount = 0;

  /**
   * Records `answer` to a request of `kind`; returns true when its status is one of `expected`.
   * `what` says which request it was, for the report.
   */
  record(kind: Kind, what: string, answer: Answer, expected: readonly number[]): boolean {
    const latencies = this.latencies.get(kind) ?? [];
    latencies.push(answer.ms);
    this.latencies.set(kind, latencies);
    const statuses = this.statuses.get(kind) ?? {};
    const key = answer.status === 0 ? 'no answer' : String(answer.status);
    statuses[key] = (statuses[key] ?? 0) + 1;
    this.statuses.set(kind, statuses);
    const ok = answer.status !== 0 && expected.includes(answer.status);
    if (!ok) this.surprise({ kind, what, status: answer.status, expected: [...expected], answer: describe(answer) });
    return ok;
  }

  /** Notes something the model did not expect in an answer whose status was right (wrong roles, say). */
  surprise(surprise: Surprise): void {
    this.surpriseCount += 1;
    this.unexpectedByKind.set(surprise.kind, (this.unexpectedByKind.get(surprise.kind) ?? 0) + 1);
    if (this.surprises.length < SURPRISES_KEPT) this.surprises.push(surprise);
  }

  /** The figures of every kind, in {@link KINDS} order. */
  stats(): KindStats[] {
    return KINDS.map((kind) => {
      const sorted = [...(this.latencies.get(kind) ?? [])].sort((a, b) => a - b);
      return {
        kind,
        requests: sorted.length,
        statuses: this.statuses.get(kind) ?? {},
        unexpected: this.unexpectedByKind.get(kind) ?? 0,
        p50Ms: round1(quantile(sorted, 0.5)),
        p99Ms: round1(quantile(sorted, 0.99)),
        maxMs: round1(sorted.at(-1) ?? Number.NaN),
      };
    });
  }
}

function describe(answer: Answer): string {
  if (answer.status === 0) return answer.error ?? 'no answer';
  const text = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
