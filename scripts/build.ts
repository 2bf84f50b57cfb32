/**
 * `pnpm build`: the production build. Bundles each service's entry points with esbuild into
 * `dist/<service>/` as CommonJS for Node 20: our own code and the workspace `@gatehouse/*`
 * packages go into the bundle, every third-party package stays an ordinary `require`.
 *
 * Why third-party stays external: PGlite loads its WASM and data files from its package
 * directory, piscina starts its workers from its own files, knex loads its dialects and `pg`
 * by name at run time; bundling them would mean copying assets and chasing dynamic requires.
 * A production install (`pnpm install --prod --frozen-lockfile`) provides them instead.
 *
 * How a bundle finds them: a bundle of `services/auth` also contains `@gatehouse/common`, whose
 * `require('pino')` pnpm resolves from `packages/common`, not from `services/auth` (pnpm gives
 * each package only its own dependencies). So the build records, for every external import,
 * the package directory it resolves to *from the file that imports it*, and links it as
 * `dist/<service>/node_modules/<name>` (a relative symlink into `node_modules/.pnpm`). The
 * bundle then loads exactly the versions `pnpm start` loads, in this checkout and in the
 * Docker image, whose production install lays out `node_modules/.pnpm` the same way from the
 * same lockfile. Two versions of one package in one bundle fail the build.
 *
 * Usage: `pnpm build [--outdir DIR]` (default `dist`). Then `node dist/auth/main.js`,
 * `node dist/auth/cli.js migrate`, `node dist/content/main.js`, `node dist/gateway/main.js`.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { build, type PartialMessage, type Plugin } from 'esbuild';

const root = path.resolve(__dirname, '..');

/** What each service's bundle directory holds: output name → source entry. */
export const SERVICES: Record<string, Record<string, string>> = {
  auth: {
    main: 'services/auth/src/main.ts',
    cli: 'services/auth/src/cli.ts',
    // piscina loads it by file name next to the bundle: `path.join(__dirname, 'bcrypt-worker.js')`.
    'bcrypt-worker': 'services/auth/src/services/bcrypt-worker.js',
  },
  content: { main: 'services/content/src/main.ts' },
  gateway: { main: 'gateway/src/main.ts' },
};

export interface BuiltService {
  name: string;
  dir: string;
  /** Output files (relative to `dir`) and their sizes in bytes. */
  files: { file: string; bytes: number }[];
  /** Third-party packages the bundle requires, each linked under `dir/node_modules`. */
  externals: string[];
}

const builtins = new Set(builtinModules);

/** `@scope/name/sub/path` → `@scope/name`; `name/sub` → `name`. */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? specifier);
}

/** The directory Node would load `name` from when required in `fromDir` (the realpath). */
function findPackageDir(name: string, fromDir: string): string | undefined {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return realpathSync(candidate);
    if (path.dirname(dir) === dir) return undefined;
  }
}

/**
 * Leaves every bare import except `@gatehouse/*` external, and records which package
 * directory it resolves to from its importer, refusing two different ones for one name.
 */
function externalPackages(resolved: Map<string, { dir: string; importer: string }>): Plugin {
  /** Notes the package `specifier` loads from `importer`; returns an error message or undefined. */
  function record(specifier: string, importer: string): string | undefined {
    if (specifier.startsWith('node:') || builtins.has(specifier) || specifier.startsWith('@gatehouse/')) return undefined;
    const name = packageName(specifier);
    const dir = findPackageDir(name, path.dirname(importer));
    if (!dir) return `cannot find package ${name} from ${path.relative(root, importer)} (run pnpm install)`;
    const seen = resolved.get(name);
    if (seen && seen.dir !== dir) {
      return (
        `${name} resolves to two versions in one bundle: ${path.relative(root, seen.dir)} (from ` +
        `${path.relative(root, seen.importer)}) and ${path.relative(root, dir)} (from ` +
        `${path.relative(root, importer)}); align the versions in the workspace package.json files`
      );
    }
    resolved.set(name, { dir, importer });
    return undefined;
  }

  return {
    name: 'gatehouse-external-packages',
    setup(pluginBuild) {
      pluginBuild.onResolve({ filter: /^[^./]/ }, (args) => {
        if (args.path.startsWith('node:') || builtins.has(args.path)) return { path: args.path, external: true };
        if (args.path.startsWith('@gatehouse/')) return undefined; // bundled from the workspace
        const error = record(args.path, args.importer);
        return error ? { errors: [{ text: error }] } : { path: args.path, external: true };
      });
      // `require.resolve('swagger-ui-dist/package.json')` is left for run time, where it must
      // find the package too: record those as well.
      pluginBuild.onLoad({ filter: /\.[cm]?[jt]s$/ }, (args) => {
        const contents = readFileSync(args.path, 'utf8');
        const errors: PartialMessage[] = [];
        for (const [, specifier = ''] of contents.matchAll(/require\.resolve\(\s*['"]([^'"./][^'"]*)['"]/g)) {
          const error = record(specifier, args.path);
          if (error) errors.push({ text: error });
        }
        return { contents, loader: args.path.endsWith('ts') ? 'ts' : 'js', errors };
      });
    },
  };
}

/** Bundles one service into `outdir/<name>` and links its external packages. */
async function buildService(name: string, entries: Record<string, string>, outdir: string): Promise<BuiltService> {
  const dir = path.join(outdir, name);
  const resolved = new Map<string, { dir: string; importer: string }>();
  const result = await build({
    entryPoints: Object.fromEntries(Object.entries(entries).map(([out, entry]) => [out, path.join(root, entry)])),
    outdir: dir,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // Not minified: stack traces and the named middleware stay readable. Source maps map them
    // back to the TypeScript (`node --enable-source-maps`).
    sourcemap: true,
    logLevel: 'warning',
    metafile: true,
    plugins: [externalPackages(resolved)],
  });
  for (const [pkg, { dir: target }] of resolved) {
    const link = path.join(dir, 'node_modules', pkg);
    mkdirSync(path.dirname(link), { recursive: true });
    symlinkSync(path.relative(path.dirname(link), target), link, 'dir');
  }
  const files = Object.keys(result.metafile.outputs)
    .map((file) => path.relative(dir, path.resolve(file)))
    .filter((file) => file.endsWith('.js'))
    .map((file) => ({ file, bytes: statSync(path.join(dir, file)).size }));
  return { name, dir, files, externals: [...resolved.keys()].sort() };
}

/** Builds every service into `outdir` (emptied first). */
export async function buildServices(outdir = path.join(root, 'dist')): Promise<BuiltService[]> {
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  // The bundles are CommonJS whatever a package.json above them might say.
  writeFileSync(path.join(outdir, 'package.json'), `${JSON.stringify({ private: true, type: 'commonjs' }, null, 2)}\n`);
  const built: BuiltService[] = [];
  for (const [name, entries] of Object.entries(SERVICES)) built.push(await buildService(name, entries, outdir));
  return built;
}

if (require.main === module) {
  const { values } = parseArgs({ options: { outdir: { type: 'string' } } });
  const outdir = path.resolve(values.outdir ?? path.join(root, 'dist'));
  buildServices(outdir).then(
    (built) => {
      for (const service of built) {
        const sizes = service.files.map(({ file, bytes }) => `${file} ${(bytes / 1024).toFixed(0)} KiB`).join(', ');
        process.stdout.write(`${path.relative(process.cwd(), service.dir)}: ${sizes}\n`);
        process.stdout.write(`  external: ${service.externals.join(', ')}\n`);
      }
    },
    (err: unknown) => {
      // esbuild has already printed its errors with file and line.
      process.stderr.write(`build failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}\n`);
      process.exit(1);
    },
  );
}
