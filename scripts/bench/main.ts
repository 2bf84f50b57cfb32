/**
 * `pnpm bench`: starts the stack and a bare HTTP baseline server as child processes, creates
 * its users, runs the fixed workloads with autocannon (`--runs` times, medians reported), and
 * writes docs/benchmarks/latest.{json,md,svg}. See `pnpm bench --help`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createBenchAccounts, newAccount, newTag, signIn, type Account } from './accounts';
import { assertProcAvailable, hwmMbOf, measureBcrypt, processTree } from './measure';
import {
  findFailures,
  renderText,
  summarizeAuthHealth,
  summarizeSignin,
  summarizeWorkloads,
  writeReport,
  type BenchReport,
  type RunRecord,
} from './report';
import { profileWorkloads } from './profile';
import { runWorkload, type LoadSettings, type RunTargets, type WorkloadRun } from './runner';
import { SERVICES, buildServices } from '../build';
import { composeNodeFlags } from '../image';
import { ProcessSet, ROOT, imageProcessEnv, prepareDatabase, startBaseline, startKoaFloor, startProxyFloor, startStack, superviseRun, type BenchProcess } from './stack';
import {
  PROCESS_NAMES,
  RefreshTokenPool,
  WORKLOAD_NAMES,
  buildWorkloads,
  isWorkloadName,
  type ProcessName,
  type Workload,
  type WorkloadName,
} from './workloads';

const USAGE = `pnpm bench [options]

Builds the services (pnpm build, into dist/) and starts auth, content and gateway from the
bundles, as the Docker image runs them, with a bare node:http server as the baseline, a
bare node:http proxy in front of content as the floor of any gateway and a bare Koa app as
the floor of any Koa service; runs fixed workloads
against them with autocannon, and writes
docs/benchmarks/latest.json, latest.md and latest.svg. Uses the PostgreSQL server of
DATABASE_URL when it is set (a fresh database, dropped afterwards), else the embedded database
in a temporary directory.

Options:
  --runs N            run the whole workload list N times, report medians (default 3)
  --duration S        measured seconds per workload (default 10)
  --warmup S          warm-up seconds before each, not counted (default 2)
  --connections N     concurrent connections (default 50)
  --only A,B,...      only these workloads (the baseline always runs):
                      ${WORKLOAD_NAMES.join(', ')}
  --out DIR           write the reports to DIR instead of docs/benchmarks
  --workers N         run the gateway and the content service with WORKERS=N (node:cluster
                      processes sharing the port; default 1)
  --source            run the services from TypeScript through tsx, as pnpm start does,
                      instead of building them
  --profile           run every process with V8's sampling profiler (node --cpu-prof):
                      the report then says where each serving process spent its time in
                      each workload (own code, packages, Node.js, native, GC), and the
                      profiles are kept in DIR/profiles/<process>/ for Chrome DevTools;
                      profiling costs CPU, so compare its figures only with each other
  --smoke             a quick check: 1 run, 1 s per workload after 0.5 s of warm-up,
                      10 connections, reports to a temporary directory; exits 1 when any
                      workload had errors or non-2xx answers
  -h, --help          this text
`;

/**
 * Users the refresh workloads' sessions belong to: one per connection up to this many, so that
 * few refreshes wait for the same user's lock.
 */
const REFRESH_USERS_MAX = 50;

/** bcrypt cost of the services and of the reference measurement (the tutorial's). */
const BCRYPT_COST = 10;

class UsageError extends Error {}

interface BenchOptions {
  runs: number;
  load: LoadSettings;
  only: WorkloadName[] | undefined;
  smoke: boolean;
  outDir: string | undefined;
  /** Run the services from TypeScript (tsx) rather than from the build. */
  source: boolean;
  /** Sequential bcrypt compares timed for the sign-in reference. */
  bcryptCompares: number;
  /** `WORKERS` of the gateway and the content service. */
  workers: number;
  /** Run the processes under V8's sampling profiler and summarize the profiles. */
  profile: boolean;
  help: boolean;
}

function refreshUsersFor(options: BenchOptions): number {
  return Math.min(options.load.connections, REFRESH_USERS_MAX);
}

function numberOption(value: string | undefined, flag: string, fallback: number, rule: { integer: boolean; min: number; max: number }): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (value.trim() === '' || !Number.isFinite(parsed) || (rule.integer && !Number.isInteger(parsed)) || parsed < rule.min || parsed > rule.max) {
    throw new UsageError(`--${flag} must be ${rule.integer ? 'a whole number' : 'a number'} from ${rule.min} to ${rule.max}, not "${value}"`);
  }
  return parsed;
}

function parseOptions(argv: string[]): BenchOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        runs: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        connections: { type: 'string' },
        only: { type: 'string' },
        out: { type: 'string' },
        workers: { type: 'string' },
        smoke: { type: 'boolean', default: false },
        source: { type: 'boolean', default: false },
        profile: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const smoke = values.smoke;
  const only = values.only?.split(',').map((name) => name.trim()).filter(Boolean);
  const unknown = only?.filter((name) => !isWorkloadName(name)) ?? [];
  if (unknown.length > 0) throw new UsageError(`unknown workload ${unknown.join(', ')}; known: ${WORKLOAD_NAMES.join(', ')}`);
  return {
    runs: numberOption(values.runs, 'runs', smoke ? 1 : 3, { integer: true, min: 1, max: 100 }),
    load: {
      durationSec: numberOption(values.duration, 'duration', smoke ? 1 : 10, { integer: false, min: 0.5, max: 3600 }),
      warmupSec: numberOption(values.warmup, 'warmup', smoke ? 0.5 : 2, { integer: false, min: 0, max: 600 }),
      connections: numberOption(values.connections, 'connections', smoke ? 10 : 50, { integer: true, min: 1, max: 1000 }),
    },
    only: only?.filter(isWorkloadName),
    smoke,
    outDir: values.out,
    source: values.source,
    bcryptCompares: smoke ? 3 : 20,
    workers: numberOption(values.workers, 'workers', 1, { integer: true, min: 1, max: 64 }),
    profile: values.profile,
    help: values.help,
  };
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function progressLine(result: WorkloadRun & { ratioToBaseline: number }): string {
  const problems = [
    result.non2xx > 0 ? `non-2xx ${result.non2xx} ${JSON.stringify(result.statusCodes)}` : '',
    result.errors > 0 ? `errors ${result.errors} (timeouts ${result.timeouts})` : '',
  ].filter(Boolean);
  return (
    `  ${result.name.padEnd(13)} ${Math.round(result.requestsPerSec).toString().padStart(7)} req/s` +
    `  ${result.ratioToBaseline.toFixed(3).padStart(6)}× baseline  p50 ${result.latency.p50Ms} ms  p99 ${result.latency.p99Ms} ms` +
    `  CPU ${result.cpuMsPerRequest.toPrecision(3)} ms/req${problems.length > 0 ? `  !! ${problems.join(', ')}` : ''}`
  );
}

/** Everything the runs need from the started processes. */
interface Started {
  processes: Record<ProcessName, BenchProcess>;
  urls: { baseline: string; floor: string; koa: string; content: string; gateway: string; auth: string };
}

/** Creates the users, then runs the selected workloads `options.runs` times. */
async function runAll(
  options: BenchOptions,
  started: Started,
  admin: Account,
  tag: string,
  signal: AbortSignal,
): Promise<{ runs: RunRecord[]; workloads: Pick<Workload, 'name' | 'title' | 'servedBy'>[] }> {
  const gatewayUrl = started.urls.gateway;
  const accounts = await createBenchAccounts(gatewayUrl, admin, tag, refreshUsersFor(options));
  let signins = 0;
  const refreshTokens = new RefreshTokenPool(async () => {
    const account = accounts.refreshUsers[(signins += 1) % accounts.refreshUsers.length] ?? accounts.user;
    return (await signIn(gatewayUrl, account)).refreshToken;
  });
  let signups = 0;
  const nextSignup = () => newAccount(`bench_new${(signups += 1)}`, tag);
  const targets: RunTargets = {
    processes: PROCESS_NAMES.map((name) => ({ name, pid: started.processes[name].pid })),
    authHealthUrl: `${started.urls.auth}/healthz`,
  };
  const selected = new Set<WorkloadName>(['baseline', ...(options.only ?? WORKLOAD_NAMES)]);

  const runs: RunRecord[] = [];
  let ran: Workload[] = [];
  for (let run = 1; run <= options.runs; run += 1) {
    say(`Run ${run} of ${options.runs}:`);
    // Fresh access tokens for each run, so none expires during a long benchmark.
    const [user, moderator] = await Promise.all([signIn(gatewayUrl, accounts.user), signIn(gatewayUrl, accounts.moderator)]);
    const workloads = buildWorkloads({
      urls: started.urls,
      userToken: user.accessToken,
      moderatorToken: moderator.accessToken,
      signinAccount: accounts.user,
      refreshTokens,
      nextSignup,
    })
      .filter((workload) => selected.has(workload.name))
      .sort((a, b) => WORKLOAD_NAMES.indexOf(a.name) - WORKLOAD_NAMES.indexOf(b.name));

    ran = workloads;
    const record: RunRecord = { run, workloads: [] };
    let baselineRequestsPerSec = Number.NaN;
    for (const workload of workloads) {
      if (workload.name === 'signin') {
        record.bcrypt = await measureBcrypt(ROOT, BCRYPT_COST, options.bcryptCompares);
        say(`  (one bcryptjs thread at cost ${BCRYPT_COST}: ${record.bcrypt.comparesPerSec.toFixed(1)} compares/s)`);
      }
      const result = await runWorkload(workload, options.load, targets, signal);
      if (signal.aborted) throw new Error('interrupted');
      const exit = PROCESS_NAMES.map((name) => started.processes[name].unexpectedExit()).find(Boolean);
      if (exit) throw new Error(exit);
      if (workload.name === 'baseline') baselineRequestsPerSec = result.requestsPerSec;
      const rated = { ...result, ratioToBaseline: result.requestsPerSec / baselineRequestsPerSec };
      record.workloads.push(rated);
      say(progressLine(rated));
    }
    runs.push(record);
  }
  return { runs, workloads: ran.map(({ name, title, servedBy }) => ({ name, title, servedBy })) };
}

function machineInfo(): BenchReport['machine'] {
  return {
    cores: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown CPU',
    memoryMb: Math.round(os.totalmem() / 2 ** 20),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    loadAverageAtStart: os.loadavg().map((load) => Math.round(load * 100) / 100),
  };
}

/** Rough wall time of the runs, for the start message. */
function estimateSeconds(options: BenchOptions): number {
  const workloads = 1 + (options.only ?? WORKLOAD_NAMES).filter((name) => name !== 'baseline').length;
  const perRun = workloads * (options.load.warmupSec + options.load.durationSec + 1) + 5;
  return 20 + options.runs * perRun;
}

async function main(argv: string[]): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseOptions(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  assertProcAvailable();
  const startedAt = Date.now();
  const date = new Date().toISOString();
  const machine = machineInfo();
  const outDir = options.outDir
    ? path.resolve(options.outDir)
    : options.smoke
      ? await mkdtemp(path.join(os.tmpdir(), 'gatehouse-bench-smoke-'))
      : path.join(ROOT, 'docs/benchmarks');

  let builtDir: string | undefined;
  if (!options.source) {
    say('Building the services (pnpm build)…');
    builtDir = path.join(ROOT, 'dist');
    await buildServices(builtDir);
  }
  // Profiles of an earlier run in the same place would be summarized with this one's.
  const profileDir = options.profile ? path.join(outDir, 'profiles') : undefined;
  if (profileDir) await rm(profileDir, { recursive: true, force: true });
  const processes = new ProcessSet(builtDir, { profileDir });
  const run = superviseRun('benchmark', processes, say);

  try {
    const database = await prepareDatabase(process.env.DATABASE_URL || undefined);
    run.database = database;
    say(`Database: ${database.description}`);
    const tag = newTag();
    const admin = newAccount('bench_admin', tag);
    say(`Starting auth, content, gateway (${builtDir ? 'built, from dist/' : 'from TypeScript, through tsx'}), the baseline server and the two floors…`);
    const [stack, baseline] = await Promise.all([startStack(processes, database, admin, {
      gateway: { WORKERS: String(options.workers) },
      content: { WORKERS: String(options.workers) },
    }), startBaseline(processes)]);
    const imageEnv = builtDir === undefined ? undefined : imageProcessEnv();
    const [floor, koa] = await Promise.all([startProxyFloor(processes, stack.content.url), startKoaFloor(processes, imageEnv)]);
    const started: Started = {
      processes: { baseline, floor, koa, ...stack },
      urls: { baseline: baseline.url, floor: floor.url, koa: koa.url, content: stack.content.url, gateway: stack.gateway.url, auth: stack.auth.url },
    };
    const { durationSec, warmupSec, connections } = options.load;
    say(
      `${options.runs} run(s) of ${durationSec} s per workload after ${warmupSec} s of warm-up, ${connections} connections; ` +
        `about ${Math.ceil(estimateSeconds(options) / 60)} min.`,
    );
    const { runs, workloads } = await runAll(options, started, admin, tag, run.signal);

    const memory: BenchReport['memory'] = {};
    const errorsLogged: BenchReport['errorsLogged'] = {};
    for (const name of PROCESS_NAMES) {
      const peaks = runs.flatMap((run) => run.workloads.map((result) => result.peakRssMb[name] ?? 0));
      memory[name] = { peakRssMb: Math.max(0, ...peaks), vmHwmMb: hwmMbOf(processTree(started.processes[name].pid)) };
      errorsLogged[name] = started.processes[name].errorLines();
    }
    // Stopped, each process has written its profiles.
    await run.stopEverything();
    const profiled = profileDir
      ? await profileWorkloads(
          profileDir,
          workloads.map(({ name, servedBy }) => ({
            name,
            servedBy,
            windows: runs.flatMap((record) => record.workloads.filter((result) => result.name === name).map((result) => result.measuredWindow)),
          })),
        )
      : undefined;

    const report: BenchReport = {
      version: 1,
      date,
      elapsedSec: Math.round((Date.now() - startedAt) / 1000),
      machine,
      database: { kind: database.kind, description: database.description },
      settings: {
        runs: options.runs,
        durationSec,
        warmupSec,
        connections,
        pipelining: 1,
        bcryptCost: BCRYPT_COST,
        refreshUsers: refreshUsersFor(options),
        smoke: options.smoke,
        runtime: builtDir ? 'built' : 'tsx',
        nodeOptions: imageEnv?.NODE_OPTIONS,
        mallocArenaMax: imageEnv?.MALLOC_ARENA_MAX,
        nodeFlags: builtDir ? Object.fromEntries(Object.keys(SERVICES).map((service) => [service, composeNodeFlags(service)])) : undefined,
        workers: options.workers,
        profiled: options.profile,
        workloads: workloads.map((workload) => workload.name),
      },
      workloads: summarizeWorkloads(runs, workloads),
      signinVsBcrypt: summarizeSignin(runs, BCRYPT_COST),
      authHealth: summarizeAuthHealth(runs),
      memory,
      errorsLogged,
      ...(profiled ? { profiles: profiled.summaries, profileProblems: profiled.problems } : {}),
      runs,
    };
    const files = await writeReport(outDir, report);
    say(`\n${renderText(report)}`);
    say(`Wrote ${files.join(', ')} in ${report.elapsedSec} s.`);
    const failures = findFailures(report);
    if (failures.length > 0) say(`\nProblems:\n${failures.map((failure) => `  ${failure}`).join('\n')}`);
    return options.smoke && failures.length > 0 ? 1 : 0;
  } catch (err) {
    if (run.signal.aborted) return new Promise<number>(() => {}); // the signal handler exits
    process.stderr.write(`The benchmark failed: ${err instanceof Error ? err.message : String(err)}\n`);
    await run.stopEverything();
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
