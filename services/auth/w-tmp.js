const { Piscina } = require('piscina');
const path = require('path');
const rss = () => (process.memoryUsage().rss / 1048576).toFixed(1);
(async () => {
  const rl = process.env.XRL ? JSON.parse(process.env.XRL) : undefined;
  const pool = new Piscina({ filename: path.resolve('../../dist/auth/bcrypt-worker.js'), minThreads: 1, maxThreads: 1, resourceLimits: rl });
  await new Promise((r) => setTimeout(r, 300)); const a = rss();
  let t = performance.now();
  for (let i = 0; i < 300; i++) await pool.run({ op: 'score', password: 'Correct-Horse-' + i + 'x'.repeat(i % 40), userInputs: ['u' + i, `u${i}@example.com`] });
  console.log(JSON.stringify(rl), 'idle worker', a, 'after 300 scores', rss(), 'ms/score', ((performance.now() - t) / 300).toFixed(2));
  await pool.destroy();
})();
