/**
 * A GET of JSON from one of several instances of the same service: it asks the one that answered
 * last time first, then the others in turn, each with its own timeout, and returns the first
 * 2xx body. When none answers, it throws the last failure.
 *
 * `what` names the resource in errors (`"JWKS answered 503"`).
 */
export function createJsonGetter(
  what: string,
  urls: readonly string[],
  timeoutMs: number,
  doFetch: typeof fetch = fetch,
): () => Promise<unknown> {
  if (urls.length === 0) throw new Error(`no URL to fetch the ${what} from`);
  let preferred = 0;
  return async function getJson() {
    let failure: unknown;
    for (let i = 0; i < urls.length; i++) {
      const index = (preferred + i) % urls.length;
      try {
        const response = await doFetch(urls[index]!, { signal: AbortSignal.timeout(timeoutMs) });
        if (!response.ok) {
          await response.body?.cancel();
          throw new Error(`${what} answered ${response.status}`);
        }
        const body: unknown = await response.json();
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
