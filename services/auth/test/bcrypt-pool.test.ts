import fs from 'node:fs';
import bcrypt from 'bcryptjs';
import { waitFor } from '@gatehouse/testing';
import { createBcryptPool, createPasswordHasher, type BcryptPool } from '../src/services/passwords';

// The worker-thread pool main uses for bcrypt: real threads running bcrypt-worker.js.
const itOnLinux = process.platform === 'linux' ? it : it.skip;
let pool: BcryptPool;

beforeAll(() => {
  pool = createBcryptPool(2);
});

afterAll(() => pool.close());

describe('createBcryptPool', () => {
  it('hashes in a worker thread with the given cost, and the hash verifies anywhere', async () => {
    const hash = await pool.hash('correct-horse-battery', 5);
    expect(bcrypt.getRounds(hash)).toBe(5);
    expect(await bcrypt.compare('correct-horse-battery', hash)).toBe(true);
  });

  it('compares in a worker thread', async () => {
    const hash = await bcrypt.hash('correct-horse-battery', 4);
    expect(await pool.compare('correct-horse-battery', hash)).toBe(true);
    expect(await pool.compare('wrong-horse-battery', hash)).toBe(false);
  });

  it('runs more tasks than threads, each with its own answer', async () => {
    const passwords = Array.from({ length: 9 }, (_, i) => `password-number-${i}`);
    const hashes = await Promise.all(passwords.map((password) => pool.hash(password, 4)));
    const checks = await Promise.all(passwords.map((password, i) => pool.compare(password, hashes[(i + 1) % hashes.length] ?? '')));
    expect(checks.every((matched) => !matched)).toBe(true);
    expect(await Promise.all(passwords.map((password, i) => pool.compare(password, hashes[i] ?? '')))).toEqual(passwords.map(() => true));
  });

  it('scores password strength in a worker thread, with the user\'s own inputs', async () => {
    expect(await pool.score('password123', [])).toBeLessThan(2);
    expect(await pool.score('correct-horse-battery-staple', [])).toBeGreaterThanOrEqual(2);
    // A long digit string is the slow case for zxcvbn: here it costs a worker, not the event loop.
    expect(await pool.score('0'.repeat(72), [])).toBeLessThan(2);
    expect(await pool.score('mail7c2e9d41af!!', ['mail7c2e9d41af'])).toBeLessThan(2);
  });

  it('scores in a thread of its own: a strength check does not wait behind a hash', async () => {
    const one = createBcryptPool(1);
    try {
      // Cost 14 holds the one bcrypt thread for about a second.
      const hashing = one.hash('holding-the-bcrypt-thread', 14).then(() => 'hash');
      const scoring = one.score('correct-horse-battery-staple', []).then(() => 'score');
      expect(await Promise.race([hashing, scoring])).toBe('score');
      await hashing;
    } finally {
      await one.close();
    }
  });

  it('starts the strength thread at the first check and ends it once idle', async () => {
    const idle = createBcryptPool(1, { strengthIdleMs: 100 });
    try {
      expect(idle.strengthThreads()).toBe(0);
      await idle.compare('no-lists-needed', await bcrypt.hash('no-lists-needed', 4));
      expect(idle.strengthThreads()).toBe(0); // a sign-in does not start it
      expect(await idle.score('password123', [])).toBeLessThan(2);
      expect(idle.strengthThreads()).toBe(1);
      await waitFor(() => idle.strengthThreads() === 0, { what: 'the idle strength thread to end' });
      // Started again by the next check.
      expect(await idle.score('correct-horse-battery-staple', [])).toBeGreaterThanOrEqual(2);
    } finally {
      await idle.close();
    }
  });

  it('by default ends the strength thread seconds after the last check', async () => {
    const defaults = createBcryptPool(1);
    try {
      await defaults.score('password123', []);
      expect(defaults.strengthThreads()).toBe(1);
      await waitFor(() => defaults.strengthThreads() === 0, { timeoutMs: 10_000, what: 'the idle strength thread to end' });
    } finally {
      await defaults.close();
    }
  });

  // Linux keeps a priority per thread, in /proc/<pid>/task/<tid>/stat (the 19th field); the
  // services run on Linux (the Docker image). A thread may end while the list is read.
  const niceOf = (stat: string): number => Number(stat.split(') ')[1]?.split(' ')[16]);
  const threadNices = (): Map<string, number> => {
    const nices = new Map<string, number>();
    for (const tid of fs.readdirSync('/proc/self/task')) {
      try {
        nices.set(tid, niceOf(fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')));
      } catch {
        // Gone between the listing and the read.
      }
    }
    return nices;
  };
  itOnLinux('runs password work at a lower priority than the event loop', async () => {
    const main = niceOf(fs.readFileSync('/proc/self/stat', 'utf8'));
    const before = new Set(threadNices().keys());
    const lower = createBcryptPool(2);
    try {
      await Promise.all([lower.compare('a', await bcrypt.hash('a', 4)), lower.compare('b', await bcrypt.hash('b', 4))]);
      await lower.score('password123', []);
      // Two bcrypt threads and the strength thread, 10 below the process (19 at most); the
      // test's own (main) thread is untouched.
      const lowered = [...threadNices()].filter(([tid, nice]) => !before.has(tid) && nice === Math.min(19, main + 10));
      expect(lowered).toHaveLength(3);
      expect(niceOf(fs.readFileSync('/proc/self/stat', 'utf8'))).toBe(main);
    } finally {
      await lower.close();
    }
  });

  it('scores the worst input the sign-up schema allows within the strength thread\'s heap limit', async () => {
    // 72 digits (zxcvbn's slowest and hungriest case), with a username and an email at their longest.
    const username = '1'.repeat(32);
    const localPart = '1'.repeat(64);
    const email = `${localPart}@${'2'.repeat(185)}.com`;
    for (const password of ['1'.repeat(72), '1234567890'.repeat(7) + '12', '19'.repeat(36), '01011990'.repeat(9)]) {
      expect([0, 1, 2, 3, 4]).toContain(await pool.score(password, [username, email, localPart]));
    }
  });

  it('refuses with 503 service.busy a score whose thread ran out of heap, and keeps answering', async () => {
    // 8 MiB cannot even hold the lists (they need about 12): every score runs out.
    const starved = createBcryptPool(1, { strengthHeapMb: 8 });
    try {
      await expect(starved.score('1'.repeat(72), [])).rejects.toMatchObject({ status: 503, code: 'service.busy' });
      // The dead thread is replaced: the next check is answered too, not left hanging.
      await expect(starved.score('password123', [])).rejects.toMatchObject({ status: 503, code: 'service.busy' });
      expect(bcrypt.getRounds(await starved.hash('bcrypt-threads-unaffected', 4))).toBe(4);
    } finally {
      await starved.close();
    }
  });

  it('refuses work with 503 service.busy when its queue is full', async () => {
    const tiny = createBcryptPool(1, { maxQueue: 2 });
    try {
      const outcomes = await Promise.allSettled(Array.from({ length: 8 }, () => tiny.hash('queued-password', 8)));
      const refused = outcomes.filter((outcome) => outcome.status === 'rejected');
      expect(refused.length).toBeGreaterThan(0);
      for (const outcome of refused) expect(outcome).toMatchObject({ reason: { status: 503, code: 'service.busy' } });
      expect(outcomes.some((outcome) => outcome.status === 'fulfilled')).toBe(true);
    } finally {
      await tiny.close();
    }
  });

  it('refuses with 503 service.busy a task that waited longer than maxWaitMs for a thread, without running it', async () => {
    const slow = createBcryptPool(1, { maxWaitMs: 50 });
    try {
      // Cost 12 keeps the one thread busy far longer than 50 ms: the tasks behind the first wait too long.
      const outcomes = await Promise.allSettled(Array.from({ length: 3 }, (_, i) => slow.hash(`waiting-password-${i}`, 12)));
      expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'rejected']);
      for (const outcome of outcomes.slice(1)) expect(outcome).toMatchObject({ reason: { status: 503, code: 'service.busy' } });
      // The thread is free again: the next task runs at once.
      expect(bcrypt.getRounds(await slow.hash('after-the-refusals', 4))).toBe(4);
    } finally {
      await slow.close();
    }
  });

  it('drops a waiting task whose client has gone with 499 request.client_closed, before the running one ends, and runs the rest', async () => {
    const one = createBcryptPool(1);
    try {
      const matching = await bcrypt.hash('still-wanted', 4);
      // Cost 12 holds the one thread for a few hundred milliseconds.
      const running = one.hash('holding-the-thread', 12).then(() => 'running task done');
      const client = new AbortController();
      const abandoned = one.hash('nobody-waits-for-this', 12, client.signal).then(
        () => 'abandoned task ran',
        (err: unknown) => err,
      );
      const wanted = one.compare('still-wanted', matching);
      client.abort();
      // Refused at once, while the running task still holds the thread: it never ran.
      expect(await Promise.race([abandoned, running])).toMatchObject({ status: 499, code: 'request.client_closed' });
      expect(await running).toBe('running task done');
      expect(await wanted).toBe(true);
      // A task whose client has already gone does not even queue.
      await expect(one.compare('still-wanted', matching, client.signal)).rejects.toMatchObject({ status: 499 });
    } finally {
      await one.close();
    }
  });

  it('refuses with 503 the tasks still waiting for a thread when it closes', async () => {
    const closing = createBcryptPool(1);
    const running = closing.hash('running-password', 10);
    const waiting = closing.hash('waiting-password', 4).then(
      () => 'ran',
      (err: unknown) => err,
    );
    running.catch(() => undefined); // cut by the close
    await closing.close();
    expect(await waiting).toMatchObject({ status: 503, code: 'service.busy' });
    await expect(closing.hash('after-close', 4)).rejects.toMatchObject({ status: 503, code: 'service.busy' });
  });

  it('serves a PasswordHasher: verify, the dummy comparison for unknown users, and rehash detection', async () => {
    const hasher = createPasswordHasher(5, pool);
    const hash = await hasher.hash('correct-horse-battery');
    expect(await hasher.verify('correct-horse-battery', hash)).toBe(true);
    expect(await hasher.verify('correct-horse-battery', undefined)).toBe(false);
    expect(hasher.needsRehash(hash)).toBe(false);
    expect(hasher.needsRehash(await bcrypt.hash('x', 4))).toBe(true);
  });
});
