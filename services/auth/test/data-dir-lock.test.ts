import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { lockDataDir } from '../src/db/data-dir-lock';

// The embedded database's lock file: one process at a time, and no lock left by a crash can
// keep the service from starting again.
describe('lockDataDir', () => {
  let dir: string;
  let dataDir: string;
  let lockFile: string;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-lock-'));
    dataDir = path.join(dir, 'pglite');
    lockFile = `${dataDir}.lock`;
  });

  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const open = () => lockDataDir(dataDir);

  it('takes the lock and releases it', () => {
    const release = open();
    expect(fs.readFileSync(lockFile, 'utf8')).toBe(String(process.pid));
    release();
    expect(fs.existsSync(lockFile)).toBe(false);
  });

  it('refuses a directory locked by another live process, naming the lock file', () => {
    fs.mkdirSync(dataDir, { recursive: true });
    fs.writeFileSync(lockFile, String(process.ppid));
    expect(open).toThrow(`is in use by process ${process.ppid}`);
    expect(open).toThrow(lockFile);
    expect(fs.readFileSync(lockFile, 'utf8')).toBe(String(process.ppid));
  });

  it.each([
    ['empty (a crash right after creating it)', ''],
    ['garbled', 'not a pid'],
    ['left by a process that is gone', '2147483646'],
  ])('takes over a lock file that is %s', (_label, content) => {
    fs.mkdirSync(dataDir, { recursive: true });
    fs.writeFileSync(lockFile, content);
    const release = open();
    expect(fs.readFileSync(lockFile, 'utf8')).toBe(String(process.pid));
    release();
  });
});
