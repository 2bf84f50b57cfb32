import path from 'node:path';
import bcrypt from 'bcryptjs';
import { Piscina } from 'piscina';
import { ServiceUnavailableError } from '@gatehouse/common';
import { MIN_PASSWORD_SCORE, passwordScore } from './password-strength';

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  /**
   * True when `password` matches `hash`. Without a hash (unknown user) it still runs one bcrypt
   * comparison against a dummy hash and returns false, so a failed sign-in takes the same time
   * whether the user exists or not.
   */
  verify(password: string, hash: string | undefined): Promise<boolean>;
  /** True when `hash` was made with fewer rounds than the configured cost (raised since). */
  needsRehash(hash: string): boolean;
  /**
   * True for a password attackers try first: in the common and breached password lists, a
   * keyboard walk, a repeat, or built from `userInputs` (username, email).
   */
  isTooGuessable(password: string, userInputs: string[]): Promise<boolean>;
}

/** Where the CPU-heavy password work runs: bcrypt, and the zxcvbn strength score. */
export interface BcryptEngine {
  hash(password: string, cost: number): Promise<string>;
  compare(password: string, hash: string): Promise<boolean>;
  score(password: string, userInputs: string[]): Promise<number>;
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
  const waiting: { start: () => void; refuse: (err: Error) => void; enqueuedAt: number }[] = [];
  let running = 0;
  let closed = false;

  /** Resolves when a thread is free for this task; rejects with 503 when it waited too long. */
  const takeThread = (): Promise<void> => {
    if (closed) return Promise.reject(busy());
    if (running < threads) {
      running += 1;
      return Promise.resolve();
    }
    if (waiting.length >= maxQueue) return Promise.reject(busy());
    return new Promise((start, refuse) => waiting.push({ start, refuse, enqueuedAt: performance.now() }));
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
  const run = async <T>(task: object): Promise<T> => {
    await takeThread();
    try {
      return await pool.run(task);
    } finally {
      releaseThread();
    }
  };
  return {
    hash: (password, cost) => run({ op: 'hash', password, cost }),
    compare: (password, hash) => run({ op: 'compare', password, hash }),
    score: (password, userInputs) => run({ op: 'score', password, userInputs }),
    close: () => {
      // Shutting down: what still waits for a thread is refused like an overload (503).
      closed = true;
      for (let next = waiting.shift(); next !== undefined; next = waiting.shift()) next.refuse(busy());
      return pool.destroy();
    },
  };
}

const busy = () =>
  new ServiceUnavailableError('service.busy', 'The server is busy. Try again shortly.', { headers: { 'Retry-After': '1' } });

/** bcrypt at `cost` rounds (10 is the tutorial's), run by `engine`. */
export function createPasswordHasher(cost: number, engine: BcryptEngine = inThreadBcrypt): PasswordHasher {
  // Made up front, so that even the first unknown user costs one comparison, not a hash too.
  const dummyHash = engine.hash('gatehouse-dummy-password', cost);
  dummyHash.catch(() => undefined); // a failure surfaces at the first unknown user, not before
  return {
    hash: (password) => engine.hash(password, cost),
    async verify(password, hash) {
      if (hash) return engine.compare(password, hash);
      await engine.compare(password, await dummyHash);
      return false;
    },
    needsRehash: (hash) => bcrypt.getRounds(hash) < cost,
    isTooGuessable: async (password, userInputs) => (await engine.score(password, userInputs)) < MIN_PASSWORD_SCORE,
  };
}
