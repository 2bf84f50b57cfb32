import path from 'node:path';
import bcrypt from 'bcryptjs';
import type { ResourceLimits } from 'node:worker_threads';
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
  /** Threads now running for the strength score: 1 while sign-ups come, else 0. */
  strengthThreads(): number;
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
  /**
   * How long the strength thread stays after its last task (default 2 s: a burst of sign-ups
   * keeps it; once they stop, its memory goes back, and the next sign-up waits about 0.1 s
   * for a new thread). With 5 s, `pnpm bench` found it still there when the refreshes began
   * 4-5 s after the sign-ups, and auth's peak there was 144-153 MiB, against 117 when they
   * began 6 s after; with 2 s, 114-119 in 3 runs, at the same sign-up rate.
   */
  strengthIdleMs?: number;
  /**
   * The strength thread's heap limit in MiB (default 20: the lists alone need about 12 MiB of
   * heap, and the worst input a limit between 14, where it ran out, and 16, where it passed).
   */
  strengthHeapMb?: number;
}

/**
 * bcryptjs in a pool of `threads` worker threads: sign-in and sign-up then use every core, and
 * the event loop stays free to answer everything else (health checks, refreshes) during a
 * storm of sign-ins.
 *
 * @remarks The strength score runs in one thread of its own, started by the first sign-up and
 * ended after `strengthIdleMs` without one. The zxcvbn lists take about 12 MiB of heap in the thread
 * that loads them: this way one thread holds them, only while sign-ups come, and a storm of
 * sign-ins never loads them. A score takes a few milliseconds, so one thread outpaces the
 * bcrypt threads' hashes; a flood of its worst case (a long digit string, about 100 ms) waits
 * behind itself, and is refused after `maxWaitMs` like any overload.
 */
export function createBcryptPool(threads: number, limits: BcryptPoolLimits = {}): BcryptPool {
  const bcryptThreads = createThreadQueue({ minThreads: threads, maxThreads: threads }, limits);
  const strengthThread = createThreadQueue(
    {
      minThreads: 0,
      maxThreads: 1,
      idleTimeout: limits.strengthIdleMs ?? 2_000,
      // zxcvbn leaves much garbage, and a new isolate's heap grows freely: 300 scores took the
      // thread 60 MiB up, 35 with a limit of 32 MiB. The lists alone need about 12 MiB; the
      // worst input the sign-up schema allows (72 digits, personal inputs at their longest)
      // ran out at 14 and passed at 16 (bcrypt-pool.test.ts scores it at the default). At 20,
      // auth's peak during a storm of sign-ups was 137-140 MiB, against 141-149 at 32 (`pnpm
      // bench --only signup,refresh`, 3 runs per set, 2 sets at 32). Running out is a 503
      // `service.busy`, and the thread is replaced.
      resourceLimits: { maxOldGenerationSizeMb: limits.strengthHeapMb ?? 20 },
    },
    limits,
  );
  return {
    hash: (password, cost, signal) => bcryptThreads.run({ op: 'hash', password, cost }, signal),
    compare: (password, hash, signal) => bcryptThreads.run({ op: 'compare', password, hash }, signal),
    score: (password, userInputs, signal) => strengthThread.run({ op: 'score', password, userInputs }, signal),
    strengthThreads: () => strengthThread.threadCount(),
    close: async () => {
      await Promise.all([bcryptThreads.close(), strengthThread.close()]);
    },
  };
}

/**
 * Worker threads running bcrypt-worker.js, behind a queue of our own rather than piscina's:
 * tasks go to piscina only when a thread is free, so one that has waited longer than
 * `maxWaitMs` can be refused without aborting a thread in the middle of a hash.
 */
function createThreadQueue(
  threads: { minThreads: number; maxThreads: number; idleTimeout?: number; resourceLimits?: ResourceLimits },
  limits: BcryptPoolLimits,
) {
  const maxQueue = limits.maxQueue ?? 256 * threads.maxThreads;
  const maxWaitMs = limits.maxWaitMs ?? 3_000;
  const pool = new Piscina({
    filename: path.join(__dirname, 'bcrypt-worker.js'),
    ...threads,
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
    if (running < threads.maxThreads) {
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
  return {
    async run<T>(task: object, signal?: AbortSignal): Promise<T> {
      await takeThread(signal);
      try {
        return (await pool.run(task)) as T;
      } catch (err) {
        // The thread hit its heap limit and was replaced: a resource ran out, not a bad request.
        if ((err as { code?: unknown }).code === 'ERR_WORKER_OUT_OF_MEMORY') throw busy(err);
        throw err;
      } finally {
        releaseThread();
      }
    },
    threadCount: () => pool.threads.length,
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

const busy = (cause?: unknown) =>
  new ServiceUnavailableError('service.busy', 'The server is busy. Try again shortly.', { cause, headers: { 'Retry-After': '1' } });

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
