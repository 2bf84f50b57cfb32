import { zxcvbn, zxcvbnOptions } from '@zxcvbn-ts/core';
import { adjacencyGraphs, dictionary } from '@zxcvbn-ts/language-common';

// The common-password lists and keyboard graphs ship inside the package: no network call. The
// options object is the library's one global; it holds only these read-only lists.
zxcvbnOptions.setOptions({ dictionary, graphs: adjacencyGraphs });

/** zxcvbn scores 0 … 4; below this a password is one of the commonest or nearly as guessable. */
const MIN_SCORE = 2;

/**
 * True for a password attackers try first: in the common and breached password lists, a
 * keyboard walk, a repeat, or built from the user's own username or email.
 */
export function isTooGuessable(password: string, userInputs: string[] = []): boolean {
  return zxcvbn(password, userInputs).score < MIN_SCORE;
}
