// Makes `npm start` / `npm test` work on a machine with nothing but Node and npm: installs the
// workspace's locked packages with the pnpm version pinned in package.json when they are missing.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const marker = join(root, 'node_modules', '.modules.yaml');
const lockfile = join(root, 'pnpm-lock.yaml');

if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lockfile).mtimeMs) process.exit(0);

const pinned = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).packageManager.replace(/^pnpm@/, '');
let installed = '';
try {
  installed = execFileSync('pnpm', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
} catch {
  // no pnpm on PATH: npx fetches the pinned one from the npm registry
}
const [command, args] =
  installed === pinned ? ['pnpm', ['install', '--frozen-lockfile']] : ['npx', ['--yes', `pnpm@${pinned}`, 'install', '--frozen-lockfile']];
console.log(`Installing packages: ${command} ${args.join(' ')}`);
execFileSync(command, args, { cwd: root, stdio: 'inherit' });
