// The body of the bcrypt worker threads (see passwords.ts). Plain CommonJS so that it loads the
// same in every runtime: node with tsx, jest, and a compiled build.
'use strict';
const bcrypt = require('bcryptjs');

/** @param {{ op: 'hash', password: string, cost: number } | { op: 'compare', password: string, hash: string }} task */
module.exports = function bcryptTask(task) {
  return task.op === 'hash' ? bcrypt.hash(task.password, task.cost) : bcrypt.compare(task.password, task.hash);
};
