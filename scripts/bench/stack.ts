/**
 * The processes the benchmark measures: the database it runs on, the three services, and the
 * bare HTTP baseline server. Each service is started with the environment the launcher
 * (scripts/start.ts) gives it, either built (`node dist/<service>/main.js`, as the Docker image
 * runs it) or from TypeScript (`node --import tsx <entry>`, as `pnpm start` does), so its pid is
 * the service itself and its CPU and memory can be read from /proc.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { createTestDatabase, freePort } from '@gatehouse/testing';
import { SERVICES } from '../build';
import { composeNodeFlags, runtimeImageEnv } from '../image';

/** The repository root. */
export const ROOT = path.resolve(__dirname, '../..');

/** The database the auth service uses during the benchmark. */
export interface BenchDatabase {
  kind: 'postgres' | 'pglite';
  /** For people: which database, where (no password). */
  description: string;
  /** Variables for the auth service. */
  env: Record<string, string>;
  /** Drops or deletes what was created for the run; call after auth has stopped. */
  cleanup(): Promise<void>;
}

/**
 * With `databaseUrl`: a fresh database on that PostgreSQL server, dropped by `cleanup()`; when
 * it may not create one, the database of `databaseUrl` itself (the benchmark's usernames are
 * unique, so it coexists with whatever is there). Without: the embedded database (PGlite) in a
 * new temporary directory.
 */
export async function prepareDatabase(databaseUrl: string | undefined): Promise<BenchDatabase> {
  if (!databaseUrl) {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-bench-'));
    return {
      kind: 'pglite',
      description: `embedded PostgreSQL (PGlite) in ${path.join(dataDir, 'pglite')} (temporary)`,
      env: { DATABASE_URL: '', DATA_DIR: dataDir },
      cleanup: () => rm(dataDir, { recursive: true, force: true }),
    };
  }
  const server = new URL(databaseUrl).host;
  try {
    const database = await createTestDatabase({ TEST_DATABASE_URL: databaseUrl });
    const url = database.databaseUrl ?? databaseUrl;
    return {
      kind: 'postgres',
      description: `PostgreSQL at ${server}, fresh database ${new URL(url).pathname.slice(1)} (dropped afterwards)`,
      env: { DATABASE_URL: url },
      cleanup: () => database.drop(),
    };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    return {
      kind: 'postgres',
      description: `PostgreSQL at ${server}, database ${new URL(databaseUrl).pathname.slice(1)} as given (could not create one: ${reason})`,
      env: { DATABASE_URL: databaseUrl },
      cleanup: async () => {},
    };
  }
}

/** One process the benchmark started. */
export interface BenchProcess {
  name: string;
  pid: number;
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** The last lines it printed, for error messages. */
  tail(): string;
  /** Log lines at level error or fatal so far (pino JSON lines with level ≥ 50). */
  errorLines(): number;
  /** Why it stopped, while the benchmark did not stop it; undefined while it runs. */
  unexpectedExit(): string | undefined;
}

interface Spawned extends BenchProcess {
  child: ChildProcess;
}

const TAIL_LINES = 40;

/**
 * The sampling profiler's interval, µs. Finer sampling costs even a process at rest CPU: at
 * node's default of 1 ms, a Koa app that had served some load used about 6 % of a core while
 * idle (1.3 % at 10 ms), and a handful of such processes never look idle enough for the
 * benchmark to start the next workload (`waitUntilIdle`).
 */
const PROFILE_INTERVAL_US = 10_000;

/** The processes one benchmark started, so that it can stop them all, whatever happens. */
export class ProcessSet {
  private readonly running = new Set<Spawned>();
  private stopping = false;

  /**
   * @param builtDir where `pnpm build` put the services (`dist`): a service entry of
   * scripts/build.ts's list then runs from its bundle there, with node alone. Without it, every
   * .ts entry runs with tsx.
   */
  constructor(
    private readonly builtDir?: string,
    private readonly options: {
      /**
       * Run every process with V8's sampling profiler (`node --cpu-prof`): each writes its
       * profiles (one per thread and process) to `profileDir/<name>/` when it exits.
       */
      profileDir?: string;
    } = {},
  ) {}

  /**
   * The node arguments that run `entry` (a file of the repository), and the variables of its
   * process: a service's bundle as the image runs it (the Dockerfile's NODE_OPTIONS and
   * MALLOC_ARENA_MAX, the node options of its docker-compose.yml command), JavaScript as is, or
   * TypeScript through tsx.
   */
  private commandFor(entry: string): { args: string[]; imageEnv?: ImageProcessEnv } {
    const built = this.builtDir === undefined ? undefined : builtEntry(this.builtDir, entry);
    if (built !== undefined) return { args: [...composeNodeFlags(built.service), built.file], imageEnv: imageProcessEnv() };
    return { args: entry.endsWith('.ts') ? ['--import', 'tsx', path.join(ROOT, entry)] : [path.join(ROOT, entry)] };
  }

  /** Runs `entry` as a process named `name`, listening on `port`. */
  launch(name: string, entry: string, port: number, env: NodeJS.ProcessEnv): BenchProcess {
    const { args, imageEnv } = this.commandFor(entry);
    const { profileDir } = this.options;
    if (profileDir !== undefined) {
      args.unshift('--cpu-prof', `--cpu-prof-interval=${PROFILE_INTERVAL_US}`, `--cpu-prof-dir=${path.join(profileDir, name)}`);
    }
    // A process group of its own (detached): the benchmark decides when the services stop, also
    // on Ctrl-C, and can kill a service together with any workers it forked.
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1', ...imageEnv, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    if (child.pid === undefined) throw new Error(`could not start ${name} (${entry})`);
    const lines: string[] = [];
    let errors = 0;
    let exitReason: string | undefined;
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      readline.createInterface({ input: stream }).on('line', (line) => {
        lines.push(line);
        if (lines.length > TAIL_LINES) lines.shift();
        if (/^\{.*"level":(5\d|6\d)[,}]/.test(line)) errors += 1;
      });
    }
    const spawned: Spawned = {
      name,
      pid: child.pid,
      url: `http://127.0.0.1:${port}`,
      child,
      tail: () => lines.join('\n'),
      errorLines: () => errors,
      unexpectedExit: () => exitReason,
    };
    child.on('exit', (code, signal) => {
      this.running.delete(spawned);
      if (!this.stopping) exitReason = `${name} exited (${signal ?? `code ${code}`}):\n${spawned.tail()}`;
    });
    this.running.add(spawned);
    return spawned;
  }

  /**
   * Stops every process started here: SIGTERM (each shuts down gracefully; a cluster's primary
   * passes it on to its workers), SIGKILL to its process group after `graceMs`, which is longer
   * than a service's own shutdown deadline (`SHUTDOWN_TIMEOUT_MS`). Resolves when all have exited.
   *
   * @remarks SIGTERM goes to the process alone, not its group: a cluster worker that got it
   * from the benchmark and then again from its primary would die of the second one, as
   * Ctrl-C twice does, without finishing its shutdown (or writing its profile).
   */
  async stopAll(graceMs = 15_000): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.running].map(
        (proc) =>
          new Promise<void>((resolve) => {
            if (proc.child.exitCode !== null || proc.child.signalCode !== null) return resolve();
            proc.child.once('exit', () => resolve());
            sendSignal(proc.pid, 'SIGTERM');
            setTimeout(() => killGroup(proc.pid, 'SIGKILL'), graceMs).unref();
          }),
      ),
    );
  }

  /** Last resort when the benchmark exits without {@link ProcessSet.stopAll}: SIGKILL to every process group. */
  killAllNow(): void {
    this.stopping = true;
    for (const proc of this.running) killGroup(proc.pid, 'SIGKILL');
  }
}

/** Sends `sig` to the process `pid`; to its whole process group when `pid` is negative. */
function sendSignal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  sendSignal(-pid, sig);
}

async function waitReady(proc: BenchProcess, urlPath: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const url = `${proc.url}${urlPath}`;
  while (Date.now() < deadline) {
    const exit = proc.unexpectedExit();
    if (exit) throw new Error(exit);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${proc.name} was not ready at ${url} within ${timeoutMs / 1000}s:\n${proc.tail()}`);
}

/** The first admin, created by the auth service at start (`ADMIN_USERNAME`/…). */
export interface AdminAccount {
  username: string;
  email: string;
  password: string;
}

/** The three services, running. */
export interface BenchStack {
  auth: BenchProcess;
  content: BenchProcess;
  gateway: BenchProcess;
}

/**
 * Launches a process that listens on the port it is given, on a free port, and waits until
 * `readyPath` answers 200. Another program may take the free port before the process binds it
 * (tests start servers on ephemeral ports all the time); then it tries again on another.
 */
async function launchListening(
  processes: ProcessSet,
  name: string,
  entry: string,
  envFor: (port: number) => NodeJS.ProcessEnv,
  readyPath: string,
): Promise<BenchProcess> {
  for (let attempt = 1; ; attempt += 1) {
    const port = await freePort();
    const proc = processes.launch(name, entry, port, envFor(port));
    try {
      await waitReady(proc, readyPath);
      return proc;
    } catch (err) {
      if (attempt >= 3 || !(err instanceof Error) || !err.message.includes('EADDRINUSE')) throw err;
    }
  }
}

/** Variables set on top of the benchmark's settings, per service (`pnpm soak` keeps the sign-in throttle on). */
export type StackOverrides = Partial<Record<keyof BenchStack, NodeJS.ProcessEnv>>;

/**
 * Starts auth (which migrates the database, creates the signing key and the first admin), then
 * content and gateway, on free ports, and resolves once all three are ready; as `pnpm start`
 * does, with the benchmark's settings: logs at warn, bcrypt cost 10 (the tutorial's), and the
 * gateway's rate limit and the sign-in throttle off, since the load comes from one address.
 * `overrides` replace or add variables of one service.
 */
export async function startStack(
  processes: ProcessSet,
  database: BenchDatabase,
  admin: AdminAccount,
  overrides: StackOverrides = {},
): Promise<BenchStack> {
  const common = { LOG_LEVEL: 'warn', BCRYPT_COST: '10', AUTH_RATE_LIMIT: '0', SIGNIN_MAX_FAILURES: '0' };
  const auth = await launchListening(
    processes,
    'auth',
    'services/auth/src/main.ts',
    (port) => ({
      ...common,
      ...database.env,
      PORT: String(port),
      ADMIN_USERNAME: admin.username,
      ADMIN_EMAIL: admin.email,
      ADMIN_PASSWORD: admin.password,
      ...overrides.auth,
    }),
    '/readyz',
  );
  // content is ready once it has fetched the signing keys and the revocation feed from auth.
  const content = await launchListening(
    processes,
    'content',
    'services/content/src/main.ts',
    (port) => ({ ...common, PORT: String(port), AUTH_URL: auth.url, ...overrides.content }),
    '/readyz',
  );
  const gateway = await launchListening(
    processes,
    'gateway',
    'gateway/src/main.ts',
    (port) => ({ ...common, PORT: String(port), AUTH_URL: auth.url, CONTENT_URL: content.url, ...overrides.gateway }),
    '/readyz',
  );
  return { auth, content, gateway };
}

/** Starts the bare node:http server of baseline-server.mjs on a free port and waits for it. */
export function startBaseline(processes: ProcessSet): Promise<BenchProcess> {
  return launchListening(processes, 'baseline', 'scripts/bench/baseline-server.mjs', (port) => ({ PORT: String(port) }), '/');
}

/** Starts the bare proxy of proxy-floor.mjs in front of `upstreamUrl` and waits for it. */
export function startProxyFloor(processes: ProcessSet, upstreamUrl: string): Promise<BenchProcess> {
  return launchListening(
    processes,
    'floor',
    'scripts/bench/proxy-floor.mjs',
    (port) => ({ PORT: String(port), UPSTREAM_URL: upstreamUrl }),
    '/api/test/all',
  );
}

/**
 * Starts the bare Koa app of koa-floor.mjs and waits for it; with `imageEnv`, the content
 * service's, so that the two differ only in what the app does.
 */
export function startKoaFloor(processes: ProcessSet, imageEnv?: ImageProcessEnv): Promise<BenchProcess> {
  return launchListening(
    processes,
    'koa',
    'scripts/bench/koa-floor.mjs',
    (port) => ({ PORT: String(port), ...imageEnv }),
    '/api/test/all',
  );
}

/** The variables of the Dockerfile's runtime image that shape the node process itself. */
export interface ImageProcessEnv {
  NODE_OPTIONS: string;
  MALLOC_ARENA_MAX?: string;
}

/** `NODE_OPTIONS` (or '') and `MALLOC_ARENA_MAX` as the Dockerfile's runtime image sets them. */
export function imageProcessEnv(): ImageProcessEnv {
  const { NODE_OPTIONS = '', MALLOC_ARENA_MAX } = runtimeImageEnv();
  return MALLOC_ARENA_MAX === undefined ? { NODE_OPTIONS } : { NODE_OPTIONS, MALLOC_ARENA_MAX };
}

/** `dist/<service>/<name>.js` for an entry of scripts/build.ts's list, else undefined. */
function builtEntry(builtDir: string, entry: string): { service: string; file: string } | undefined {
  for (const [service, entries] of Object.entries(SERVICES)) {
    for (const [name, source] of Object.entries(entries)) {
      if (source === entry) return { service, file: path.join(builtDir, service, `${name}.js`) };
    }
  }
  return undefined;
}

/** A run's processes and database, stopped together however the run ends. */
export interface SupervisedRun {
  /** Aborted on SIGINT or SIGTERM; the run then stops what it is doing. */
  readonly signal: AbortSignal;
  /** The database to clean up after the processes have stopped, once there is one. */
  database: BenchDatabase | undefined;
  /** Stops every process, then cleans up the database; once, whoever calls it first. */
  stopEverything(): Promise<void>;
}

/**
 * Makes sure the services `processes` started never outlive the `what` (`benchmark`, `soak`)
 * that started them: killed when this process exits, stopped gracefully on SIGINT or SIGTERM
 * (exit 130; the same signal again forces it).
 */
export function superviseRun(what: string, processes: ProcessSet, say: (line: string) => void): SupervisedRun {
  const abort = new AbortController();
  let cleanup: Promise<void> | undefined;
  const run: SupervisedRun = {
    signal: abort.signal,
    database: undefined,
    stopEverything: () =>
      (cleanup ??= (async () => {
        await processes.stopAll();
        await run.database?.cleanup().catch((err: unknown) => say(`Could not remove the ${what}'s database: ${String(err)}`));
      })()),
  };
  process.on('exit', () => processes.killAllNow());
  const onSignal = (signal: NodeJS.Signals) => {
    say(`\n${signal}: stopping the ${what} and the services (again to force)…`);
    process.once(signal, () => process.exit(130));
    abort.abort();
    void run.stopEverything().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return run;
}
