import { zxcvbn, zxcvbnOptions } from '@zxcvbn-ts/core';
import { adjacencyGraphs, dictionary } from '@zxcvbn-ts/language-common';
import { ZodError } from 'zod';

// The common-password lists and keyboard graphs ship inside the package: no network call. The
// options object is the library's one global; it holds only these read-only lists. (The
// worker threads set up their own copy in bcrypt-worker.js.)
zxcvbnOptions.setOptions({ dictionary, graphs: adjacencyGraphs });

/** zxcvbn scores 0 … 4; below this a password is one of the commonest or nearly as guessable. */
export const MIN_PASSWORD_SCORE = 2;

/** The zxcvbn score of `password`, on this thread. */
export function passwordScore(password: string, userInputs: string[]): number {
  return zxcvbn(password, userInputs).score;
}

/** What the user chose that a guessable password is often made of. */
export function personalInputs(account: { username: string; email: string }): string[] {
  const [localPart = ''] = account.email.split('@');
  return [account.username, account.email, localPart];
}

/** The 400 `request.invalid_input` naming `password`, as the schemas' errors look. */
export function guessablePasswordError(): ZodError {
  return new ZodError([
    {
      code: 'custom',
      path: ['password'],
      message: 'is too common or too easy to guess; use a longer passphrase of unrelated words',
      input: undefined,
    },
  ]);
}
