import bcrypt from 'bcryptjs';

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

/** bcryptjs at `cost` rounds (10 is the tutorial's). */
export function createPasswordHasher(cost: number): PasswordHasher {
  // Made up front, so that even the first unknown user costs one comparison, not a hash too.
  const dummyHash = bcrypt.hash('gatehouse-dummy-password', cost);
  return {
    hash: (password) => bcrypt.hash(password, cost),
    async verify(password, hash) {
      if (hash) return bcrypt.compare(password, hash);
      await bcrypt.compare(password, await dummyHash);
      return false;
    },
    needsRehash: (hash) => bcrypt.getRounds(hash) < cost,
  };
}
