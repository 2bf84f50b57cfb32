import path from 'node:path';
import bcrypt from 'bcryptjs';
import { Piscina } from 'piscina';
import { AppError, ServiceUnavailableError } from '@gatehouse/common';
import { MIN_PASSWORD_SCORE, passwordScore } from './password-strength';

/**
 * Every method takes an optional `signal`: aborted (the client has gone), work still waiting for
 * a thread is dropped with 499 `request.client_closed` rather than done for nobody.
 */
export interface PasswordHasher {
  hash(password: string, signal?: AbortSignal): Promise<string>;
  /**
   * True when `password` matches `hash`. Without a hash (unknown user) it still runs one bcrypt
   * comparison against a dummy hash and returns false, so a failed sign-in takes the same time
   * whether the user exists or not.
   */
  verify(password: string, hash: string | undefined, signal?: AbortSignal): Promise<boolean>;
  /** True when `hash` was made with fewer rounds than the configured cost (raised since). */
  needsRehash(hash: string): boolean;
  /**
   * True for a password attackers try first: in the common and breached password lists, a
   * keyboard walk, a repeat, or built from `userInputs` (username, email).
   */
  isTooGuessable(password: string, userInputs: string[], signal?: AbortSignal): Promise<boolean>;
}

/** Where the CPU-heavy password work runs: bcrypt, and the zxcvbn strength score. */
export interface BcryptEngine {
  hash(password: string, cost: number, signal?: AbortSignal): Promise<string>;
  compare(password: string, hash: string, signal?: AbortSignal): Promise<boolean>;
  score(password: string, userInputs: string[], signal?: AbortSignal): Promise<number>;
}

/** On the calling thread (bcryptjs yields between rounds, but uses this thread's CPU). */
export const inThreadBcrypt: BcryptEngine = {
  hash: (password, cost) => bcrypt.hash(password, cost),
  compare: (password, hash) => bcrypt.compare(password, hash),
  score: passwordScore,
};

export interface BcryptPool extends BcryptEngine {
  /** Ends the worker threads: tasks running are cut, tasks waiting are refused with 503. */
  close(): Promise<void>;
}

export interface BcryptPoolLimits {
  /** Tasks that may wait for a thread; beyond that, 503 at once. */
  maxQueue?: number;
  /**
   * How long a task may wait for a thread before it is refused with 503 instead of run. A
   * sign-up queues twice (strength check, then hash), and so does a sign-in that rehashes, so
   * twice this plus two tasks must stay below the gateway's `UPSTREAM_TIMEOUT_MS`: under
   * overload a sign-up is then refused before anything is written, rather than written after
   * the gateway has answered 504.
   */
  maxWaitMs?: number;
}

/**
 * bcryptjs in a pool of `threads` worker threads: sign-in and sign-up then use every core, and
 * the event loop stays free to answer everything else (health checks, refreshes) during a
 * storm of sign-ins.
 *
 * @remarks Tasks wait in a queue of our own, not piscina's, and go to piscina only when a
 * thread is free: a task that has waited longer than `maxWaitMs` can then be refused without
 * aborting a thread in the middle of a hash.
 */
export function createBcryptPool(threads: number, limits: BcryptPoolLimits = {}): BcryptPool {
  const maxQueue = limits.maxQueue ?? 256 * threads;
  const maxWaitMs = limits.maxWaitMs ?? 3_000;
  const pool = new Piscina({
    filename: path.join(__dirname, 'bcrypt-worker.js'),
    minThreads: threads,
    maxThreads: threads,
    // Each task is a few to a few hundred milliseconds of pure CPU: one at a time per thread.
    concurrentTasksPerWorker: 1,
  });
  interface Waiting {
    start: () => void;
    refuse: (err: Error) => void;
    enqueuedAt: number;
  }
  const waiting: Waiting[] = [];
  let running = 0;
  let closed = false;

  /**
   * Resolves when a thread is free for this task; rejects with 503 when it waited too long, and
   * with 499 once `signal` aborts while it waits (its client has gone: nobody needs the answer).
   */
  const takeThread = (signal?: AbortSignal): Promise<void> => {
    if (closed) return Promise.reject(busy());
    if (signal?.aborted) return Promise.reject(clientClosed());
    if (running < threads) {
      running += 1;
      return Promise.resolve();
    }
    if (waiting.length >= maxQueue) return Promise.reject(busy());
    return new Promise((start, refuse) => {
      const entry: Waiting = { start, refuse, enqueuedAt: performance.now() };
      waiting.push(entry);
      if (!signal) return;
      const leave = () => {
        const at = waiting.indexOf(entry);
        if (at === -1) return; // already started or refused
        waiting.splice(at, 1);
        refuse(clientClosed());
      };
      signal.addEventListener('abort', leave, { once: true });
      entry.start = () => {
        signal.removeEventListener('abort', leave);
        start();
      };
      entry.refuse = (err) => {
        signal.removeEventListener('abort', leave);
        refuse(err);
      };
    });
  };
  /** Hands the thread to the next task still within its wait, refusing those past it. */
  const releaseThread = () => {
    const now = performance.now();
    for (let next = waiting.shift(); next !== undefined; next = waiting.shift()) {
      if (!closed && now - next.enqueuedAt <= maxWaitMs) {
        next.start();
        return;
      }
      next.refuse(busy());
    }
    running -= 1;
  };
  const run = async <T>(task: object, signal?: AbortSignal): Promise<T> => {
    await takeThread(signal);
    try {
      return await pool.run(task);
    } finally {
      releaseThread();
    }
  };
  return {
    hash: (password, cost, signal) => run({ op: 'hash', password, cost }, signal),
    compare: (password, hash, signal) => run({ op: 'compare', password, hash }, signal),
    score: (password, userInputs, signal) => run({ op: 'score', password, userInputs }, signal),
    close: () => {
      // Shutting down: what still waits for a thread is refused like an overload (503).
      closed = true;
      for (let next = waiting.shift(); next !== undefined; next = waiting.shift()) next.refuse(busy());
      return pool.destroy();
    },
  };
}

/** Work dropped because its client closed the request (nginx's 499); nobody reads the answer. */
const clientClosed = () => new AppError(499, 'request.client_closed', 'The client closed the request before it was answered.');

const busy = () =>
  new ServiceUnavailableError('service.busy', 'The server is busy. Try again shortly.', { headers: { 'Retry-After': '1' } });

/** bcrypt at `cost` rounds (10 is the tutorial's), run by `engine`. */
export function createPasswordHasher(cost: number, engine: BcryptEngine = inThreadBcrypt): PasswordHasher {
  // Made up front, so that even the first unknown user costs one comparison, not a hash too.
  const dummyHash = engine.hash('gatehouse-dummy-password', cost);
  dummyHash.catch(() => undefined); // a failure surfaces at the first unknown user, not before
  return {
    hash: (password, signal) => engine.hash(password, cost, signal),
    async verify(password, hash, signal) {
      if (hash) return engine.compare(password, hash, signal);
      await engine.compare(password, await dummyHash, signal);
      return false;
    },
    needsRehash: (hash) => bcrypt.getRounds(hash) < cost,
    isTooGuessable: async (password, userInputs, signal) => (await engine.score(password, userInputs, signal)) < MIN_PASSWORD_SCORE,
  };
}
