import http from 'node:http';
import https from 'node:https';

/** The largest body a JSON GET reads, bytes: a JWKS or a revocation feed is far smaller. */
export const MAX_JSON_BYTES = 8 * 1024 * 1024;

/** True for a 2xx status. */
function isSuccess(status: number): boolean {
  return status >= 200 && status <= 299;
}

/** What one GET answered: its status and, for a 2xx, its body parsed as JSON. */
export interface JsonAnswer {
  status: number;
  body?: unknown;
}

/**
 * One GET of a JSON document over node:http or node:https: no redirects followed, at most
 * `maxBytes` of body read, and the whole exchange within `timeoutMs`. A body that is not JSON
 * is a failure; a non-2xx answer is not (its status is returned, its body and connection dropped).
 *
 * @remarks Not `fetch`: Node's fetch loads undici, about 13 MiB of resident memory per process
 * (measured), which the content service would carry only for its two polls of auth. Sockets
 * are kept alive between polls by Node's global agents.
 */
export function httpGetJson(url: string, timeoutMs: number, maxBytes = MAX_JSON_BYTES): Promise<JsonAnswer> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const client = target.protocol === 'https:' ? https : target.protocol === 'http:' ? http : undefined;
    if (!client) {
      reject(new Error(`cannot GET ${target.protocol} URLs, only http: and https:`));
      return;
    }
    const fail = (err: Error) => {
      clearTimeout(timer);
      request.destroy();
      reject(err);
    };
    const request = client.get(target, { headers: { accept: 'application/json' } }, (response) => {
      const status = response.statusCode ?? 0;
      if (!isSuccess(status)) {
        // Its body is of no use: the connection goes, rather than wait for a body that may stall.
        clearTimeout(timer);
        request.destroy();
        resolve({ status });
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) fail(new Error(`answer from ${url} is larger than ${maxBytes} bytes`));
        else chunks.push(chunk);
      });
      response.on('error', fail);
      response.on('end', () => {
        clearTimeout(timer);
        if (size > maxBytes) return;
        try {
          // As fetch's json() does, a UTF-8 byte order mark is not part of the JSON.
          resolve({ status, body: JSON.parse(Buffer.concat(chunks).toString('utf8').replace(/^\uFEFF/, '')) });
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
    request.on('error', fail);
    const timer = setTimeout(() => fail(new Error(`no answer from ${url} within ${timeoutMs} ms`)), timeoutMs);
  });
}

/** `fetch` (an injected one: a test's, or one that goes through a proxy) as a JSON GET. */
function viaFetch(doFetch: typeof fetch): (url: string, timeoutMs: number) => Promise<JsonAnswer> {
  return async (url, timeoutMs) => {
    const response = await doFetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) {
      await response.body?.cancel();
      return { status: response.status };
    }
    return { status: response.status, body: await response.json() };
  };
}

/**
 * A GET of JSON from one of several instances of the same service: it asks the one that answered
 * last time first, then the others in turn, each with its own timeout, and returns the first
 * 2xx body. When none answers, it throws the last failure. Over node:http(s)
 * ({@link httpGetJson}), or with `doFetch` when one is given.
 *
 * `what` names the resource in errors (`"JWKS answered 503"`).
 */
export function createJsonGetter(
  what: string,
  urls: readonly string[],
  timeoutMs: number,
  doFetch?: typeof fetch,
): () => Promise<unknown> {
  if (urls.length === 0) throw new Error(`no URL to fetch the ${what} from`);
  const get = doFetch ? viaFetch(doFetch) : httpGetJson;
  let preferred = 0;
  return async function getJson() {
    let failure: unknown;
    for (let i = 0; i < urls.length; i++) {
      const index = (preferred + i) % urls.length;
      try {
        const { status, body } = await get(urls[index]!, timeoutMs);
        if (!isSuccess(status)) throw new Error(`${what} answered ${status}`);
        preferred = index;
        return body;
      } catch (err) {
        failure = err;
      }
    }
    throw failure;
  };
}

/** `url` as a list: one URL, or one per instance. */
export function urlList(url: string | readonly string[]): readonly string[] {
  return typeof url === 'string' ? [url] : url;
}
