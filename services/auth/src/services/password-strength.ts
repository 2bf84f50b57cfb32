import { ZodError } from 'zod';

/** zxcvbn scores 0 … 4; below this a password is one of the commonest or nearly as guessable. */
export const MIN_PASSWORD_SCORE = 2;

type Zxcvbn = (typeof import('@zxcvbn-ts/core'))['zxcvbn'];

let scorer: Promise<Zxcvbn> | undefined;

/**
 * zxcvbn with the common-password lists and keyboard graphs, which ship inside the package (no
 * network call). Loaded on first use: they take about 15 MiB in each thread that holds them, and
 * the service scores in a worker thread of its own (bcrypt-worker.js sets up that copy), so its
 * main thread loads them only when it runs without threads (`BCRYPT_THREADS=0`). The options
 * object is the library's one global; it holds only these read-only lists.
 */
async function loadScorer(): Promise<Zxcvbn> {
  const [{ zxcvbn, zxcvbnOptions }, { adjacencyGraphs, dictionary }] = await Promise.all([
    import('@zxcvbn-ts/core'),
    import('@zxcvbn-ts/language-common'),
  ]);
  zxcvbnOptions.setOptions({ dictionary, graphs: adjacencyGraphs });
  return zxcvbn;
}

/** The zxcvbn score of `password`, on this thread. */
export async function passwordScore(password: string, userInputs: string[]): Promise<number> {
  // A failed load is not kept: the next check tries again.
  scorer ??= loadScorer().catch((err: unknown) => {
    scorer = undefined;
    throw err;
  });
  return (await scorer)(password, userInputs).score;
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
