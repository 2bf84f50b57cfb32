import path from 'node:path';
import bcrypt from 'bcryptjs';
import { Piscina } from 'piscina';

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
}

/** Where the bcrypt work runs. */
export interface BcryptEngine {
  hash(password: string, cost: number): Promise<string>;
  compare(password: string, hash: string): Promise<boolean>;
}

/** bcryptjs on the calling thread (it yields between rounds, but uses this thread's CPU). */
export const inThreadBcrypt: BcryptEngine = {
  hash: (password, cost) => bcrypt.hash(password, cost),
  compare: (password, hash) => bcrypt.compare(password, hash),
};

export interface BcryptPool extends BcryptEngine {
  /** Ends the worker threads; pending work finishes first. */
  close(): Promise<void>;
}

/**
 * bcryptjs in a pool of `threads` worker threads: sign-in and sign-up then use every core, and
 * the event loop stays free to answer everything else (health checks, refreshes) during a
 * storm of sign-ins.
 */
export function createBcryptPool(threads: number): BcryptPool {
  const pool = new Piscina({
    filename: path.join(__dirname, 'bcrypt-worker.js'),
    minThreads: threads,
    maxThreads: threads,
    // Each task is a few to a few hundred milliseconds of pure CPU: one at a time per thread.
    concurrentTasksPerWorker: 1,
  });
  return {
    hash: (password, cost) => pool.run({ op: 'hash', password, cost }),
    compare: (password, hash) => pool.run({ op: 'compare', password, hash }),
    close: () => pool.destroy(),
  };
}

/** bcrypt at `cost` rounds (10 is the tutorial's), run by `engine`. */
export function createPasswordHasher(cost: number, engine: BcryptEngine = inThreadBcrypt): PasswordHasher {
  // Made up front, so that even the first unknown user costs one comparison, not a hash too.
  const dummyHash = engine.hash('gatehouse-dummy-password', cost);
  return {
    hash: (password) => engine.hash(password, cost),
    async verify(password, hash) {
      if (hash) return engine.compare(password, hash);
      await engine.compare(password, await dummyHash);
      return false;
    },
    needsRehash: (hash) => bcrypt.getRounds(hash) < cost,
  };
}
