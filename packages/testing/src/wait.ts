import { setTimeout as sleep } from 'node:timers/promises';

/** Resolves once `done()` holds, checking every 20 ms; rejects naming `what` after `timeoutMs`. */
export async function waitFor(done: () => boolean, { timeoutMs = 5_000, what = 'the condition' } = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}
