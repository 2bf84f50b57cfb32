import { randomBytes } from 'node:crypto';

export interface UserInput {
  username: string;
  email: string;
  password: string;
}

/** A sign-up body with a unique username and email, so tests never depend on each other. */
export function buildUser(overrides: Partial<UserInput> = {}): UserInput {
  const tag = randomBytes(5).toString('hex');
  return {
    username: `user_${tag}`,
    email: `user_${tag}@example.test`,
    password: `pw-${tag}-Correct-Horse`,
    ...overrides,
  };
}
