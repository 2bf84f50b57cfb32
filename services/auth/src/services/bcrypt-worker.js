// The body of the password worker threads (see passwords.ts): bcrypt, and the zxcvbn strength
// score, whose matchers can take tens of milliseconds on long digit strings. Plain CommonJS so
// that it loads the same in every runtime: node with tsx, jest, and a compiled build.
'use strict';
const bcrypt = require('bcryptjs');

let zxcvbn;
function strengthScore(password, userInputs) {
  if (!zxcvbn) {
    const core = require('@zxcvbn-ts/core');
    const common = require('@zxcvbn-ts/language-common');
    core.zxcvbnOptions.setOptions({ dictionary: common.dictionary, graphs: common.adjacencyGraphs });
    zxcvbn = core.zxcvbn;
  }
  return zxcvbn(password, userInputs).score;
}

/**
 * @param {{ op: 'hash', password: string, cost: number }
 *   | { op: 'compare', password: string, hash: string }
 *   | { op: 'score', password: string, userInputs: string[] }} task
 */
module.exports = function passwordTask(task) {
  if (task.op === 'hash') return bcrypt.hash(task.password, task.cost);
  if (task.op === 'compare') return bcrypt.compare(task.password, task.hash);
  return strengthScore(task.password, task.userInputs);
};
