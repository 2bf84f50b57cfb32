import fs from 'node:fs';
import path from 'node:path';

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readLock(lockFile: string): string | undefined {
  try {
    return fs.readFileSync(lockFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Takes the lock file beside PGlite's data directory for this process; returns the function
 * that releases it. Throws, saying what to do, while another live process holds it.
 *
 * @remarks PGlite is one process's database: two processes on one directory corrupt it.
 */
export function lockDataDir(dataDir: string): () => void {
  fs.mkdirSync(dataDir, { recursive: true });
  const lockFile = path.join(path.dirname(dataDir), `${path.basename(dataDir)}.lock`);
  for (;;) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      return () => fs.rmSync(lockFile, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const content = readLock(lockFile);
    if (content === undefined) continue; // released between our two calls: try again
    // An empty or garbled file (a crash right after creating it) holds no live process.
    const holder = /^\d+$/.test(content.trim()) ? Number(content.trim()) : 0;
    if (holder > 0 && holder !== process.pid && isRunning(holder)) {
      throw new Error(
        `The embedded database at ${dataDir} is in use by process ${holder}. ` +
          'Stop the running stack first (Ctrl-C on `npm start`), or use a PostgreSQL server with DATABASE_URL. ' +
          `If no such Gatehouse process runs, delete ${lockFile}.`,
      );
    }
    // Left by a process that is gone. Remove it only if it is still the file we judged stale,
    // so that of two processes taking over at once, one does not delete the other's fresh lock.
    if (readLock(lockFile) === content) fs.rmSync(lockFile, { force: true });
  }
}
