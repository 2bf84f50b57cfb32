// Builds the console into dist/: index.html, app.js (src/main.ts and @gatehouse/client,
// bundled) and style.css. Run by `pnpm install` (this package's `prepare` script) and by
// `pnpm --filter @gatehouse/console build`; `node console/build.mjs <outdir>` builds elsewhere.
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(process.argv[2] ?? join(here, 'dist'));

await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });
await build({
  entryPoints: [join(here, 'src', 'main.ts')],
  outfile: join(outdir, 'app.js'),
  bundle: true,
  // A classic deferred script: nothing for a CSP to object to, and no module loading rules.
  format: 'iife',
  platform: 'browser',
  target: ['es2022'],
  // Small enough unminified (a few tens of KiB), and readable in the browser's dev tools.
  minify: false,
  legalComments: 'none',
  logLevel: 'warning',
});
await copyFile(join(here, 'src', 'index.html'), join(outdir, 'index.html'));
await copyFile(join(here, 'src', 'style.css'), join(outdir, 'style.css'));
process.stdout.write(`console built into ${outdir}\n`);
