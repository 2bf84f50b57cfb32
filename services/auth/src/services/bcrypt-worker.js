// The body of the password worker threads (see passwords.ts): bcrypt, and the zxcvbn strength
// score, whose matchers can take tens of milliseconds on long digit strings. Plain CommonJS so
// that it loads the same in every runtime: node with tsx, jest, and a compiled build.
'use strict';
const os = require('node:os');
const { isMainThread } = require('node:worker_threads');
const bcrypt = require('bcryptjs');

// Password work yields the CPU to the event loop: on Linux a priority is per thread, so this
// thread (only) runs 10 below the process, and a health check or a refresh arriving during a
// storm of sign-ins is answered without waiting for a hash's time slice to end. With nothing
// else to run, the thread still gets a whole core. Elsewhere a priority is the whole
// process's, so it is left alone.
const PASSWORD_THREAD_NICE = 10;
const LOWEST_PRIORITY = 19;
if (!isMainThread && process.platform === 'linux') {
  try {
    os.setPriority(Math.min(LOWEST_PRIORITY, os.getPriority() + PASSWORD_THREAD_NICE));
  } catch {
    // Not permitted: run at the process's priority.
  }
}

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
