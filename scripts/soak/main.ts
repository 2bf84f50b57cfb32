/**
 * `pnpm soak`: starts the stack as child processes (scripts/bench/stack.ts), sends it mixed
 * traffic for a fixed time (traffic.ts), then checks what it did (verify.ts) and how its memory
 * ended up, prints a summary and exits non-zero when a check failed. See `pnpm soak --help`.
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { newAccount, newTag } from '../bench/accounts';
import { assertProcAvailable, processTree, rssMbOf, startWindow, waitUntilIdle } from '../bench/measure';
import { ProcessSet, prepareDatabase, startStack, superviseRun, type BenchDatabase, type BenchStack } from '../bench/stack';
import { KINDS, Recorder } from './client';
import { SERVICES, renderText, writeReport, type CheckResult, type MemoryFigures, type ServiceName, type SoakReport } from './report';
import { REVOCATION_GRACE_MS, THROTTLE_FAILURES, runTraffic, signInAdmin, type TrafficResult } from './traffic';
import { verifyUsers, type Verification } from './verify';

const USAGE = `pnpm soak [options]

Starts auth, content and gateway as child processes on 127.0.0.1, sends them mixed traffic
(sign-ups, sign-ins with right and wrong passwords, refreshes, refresh-token reuse, role
changes by an admin, protected reads, bad inputs) from a fixed number of clients for a fixed
time, then checks: no 5xx, every answer as expected, no lost sign-ups, roles as last set, and
each service's resident memory back near where it started. Exits 1 when a check fails.
Uses the PostgreSQL server of DATABASE_URL when it is set (a fresh database, dropped
afterwards), else the embedded database in a temporary directory.

Options:
  --duration T      how long the traffic runs: 90, 90s, 2m, 1h (default 2m)
  --concurrency N   clients sending at once, one request each (default 8)
  --bcrypt-cost N   the auth service's BCRYPT_COST (default 10, the tutorial's)
  --rest T          how long the services rest, once idle after the traffic, before their
                    memory is read again (default 5s)
  --out FILE        also write the results as JSON to FILE
  --smoke           a quick check of the soak itself: 4 s, 6 clients, bcrypt cost 4
  -h, --help        this text
`;

/**
 * A service passes the memory check when its resident memory after the traffic (idle, rested)
 * is at most its memory before the traffic plus the larger of these. RSS is a coarse leak
 * detector: V8 shrinks its heap only at a major GC, which an idle service may not run for
 * minutes, and memory freed by worker threads stays with the allocator. Measured on auth after
 * 90 s at 16 clients and bcrypt cost 4 (~130 req/s): 15 s after the traffic its RSS was
 * +140 MiB over the start with V8's heap at 135 MiB for 47 MiB in use; a full GC forced through
 * the inspector brought the heap in use back to 40 MiB (44 at the start) and RSS to +50 MiB.
 * Other such runs kept +50 to +120 MiB after 5 to 90 s of rest. So the margin is what a
 * service that does not leak may hold on to, and the check catches only a leak larger than it
 * (over a default run of ~2,000 requests, about 60 KiB per request). `warm`, `peak` and `end`
 * are printed to compare runs of different lengths.
 */
const RSS_MARGIN_MB = 128;
const RSS_MARGIN_RATIO = 0.25;

class UsageError extends Error {}

interface SoakOptions {
  durationSec: number;
  concurrency: number;
  bcryptCost: number;
  smoke: boolean;
  out: string | undefined;
  /** Seconds the services rest, once idle, before their memory is read at the end. */
  restSec: number;
  help: boolean;
}

/** `90`, `90s`, `2m`, `1h`, `500ms` → seconds, at least `min`. */
function parseDuration(value: string, flag = 'duration', min = 1): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  const unit = new Map([['ms', 0.001], ['s', 1], ['m', 60], ['h', 3600]]).get(match?.[2] ?? 's') ?? Number.NaN;
  const seconds = Number(match?.[1]) * unit;
  if (!match || !Number.isFinite(seconds) || seconds < min || seconds > 24 * 3600) {
    throw new UsageError(`--${flag} must be a time from ${min}s to 24h such as 30s, 2m or 90, not "${value}"`);
  }
  return seconds;
}

function wholeNumber(value: string | undefined, flag: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (value.trim() === '' || !Number.isInteger(parsed) || parsed < min || parsed > max) {
    throw new UsageError(`--${flag} must be a whole number from ${min} to ${max}, not "${value}"`);
  }
  return parsed;
}

function parseOptions(argv: string[]): SoakOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        duration: { type: 'string' },
        concurrency: { type: 'string' },
        'bcrypt-cost': { type: 'string' },
        rest: { type: 'string' },
        out: { type: 'string' },
        smoke: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const smoke = values.smoke;
  return {
    durationSec: values.duration === undefined ? (smoke ? 4 : 120) : parseDuration(values.duration),
    concurrency: wholeNumber(values.concurrency, 'concurrency', smoke ? 6 : 8, 1, 1000),
    bcryptCost: wholeNumber(values['bcrypt-cost'], 'bcrypt-cost', smoke ? 4 : 10, 4, 15),
    smoke,
    out: values.out === undefined ? undefined : path.resolve(values.out),
    restSec: values.rest === undefined ? (smoke ? 1 : 5) : parseDuration(values.rest, 'rest', 0),
    help: values.help,
  };
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round1 = (value: number) => Math.round(value * 10) / 10;

/** One figure per service. */
function perService<T>(figure: (name: ServiceName) => T): Record<ServiceName, T> {
  return { gateway: figure('gateway'), content: figure('content'), auth: figure('auth') };
}

/** Resident memory of each service's process tree now, MiB. */
const rssNow = (stack: BenchStack) => perService((name) => rssMbOf(processTree(stack[name].pid)));

const allPids = (stack: BenchStack) => SERVICES.flatMap((name) => processTree(stack[name].pid));

/** The first service that stopped by itself, as an error message. */
const exitOf = (stack: BenchStack) => SERVICES.map((name) => stack[name].unexpectedExit()).find(Boolean);

function addStatuses(into: Record<string, number>, statuses: Record<string, number>): void {
  for (const [status, count] of Object.entries(statuses)) into[status] = (into[status] ?? 0) + count;
}

const countWhere = (statuses: Record<string, number>, test: (status: string) => boolean) =>
  Object.entries(statuses).reduce((sum, [status, count]) => sum + (test(status) ? count : 0), 0);

const is5xx = (status: string) => /^5\d\d$/.test(status);

/** The checks, from everything measured. */
function decide(
  report: Omit<SoakReport, 'checks' | 'ok'>,
  traffic: TrafficResult,
  verification: Verification,
  crashed: string | undefined,
): CheckResult[] {
  const { statuses } = report.traffic;
  const verificationStatuses = report.verification.statuses;
  const fiveXx = countWhere(statuses, is5xx) + countWhere(verificationStatuses, is5xx);
  const noAnswer = (statuses['no answer'] ?? 0) + (verificationStatuses['no answer'] ?? 0);
  const idle = report.traffic.kinds.filter((kind) => kind.requests === 0).map((kind) => kind.kind);
  const bad = report.traffic.kinds.find((kind) => kind.kind === 'bad-input');
  const bad4xx = bad ? countWhere(bad.statuses, (status) => /^4\d\d$/.test(status)) : 0;
  const expectedListed = verification.users + 1; // the soak's admin has the tag too
  const listedOk =
    verification.listedWithTag !== undefined &&
    verification.listedWithTag >= expectedListed &&
    verification.listedWithTag <= expectedListed + traffic.unsureSignups;
  const unchecked = Math.max(0, verification.users - verification.rolesAsExpected - verification.rolesWrong.length);
  const errorsLogged = SERVICES.filter((name) => report.errorsLogged[name] > 0).map((name) => `${name} ${report.errorsLogged[name]}`);
  return [
    { name: 'services stayed up', ok: crashed === undefined, detail: crashed ?? 'all three ran to the end' },
    {
      name: 'no 5xx',
      ok: fiveXx === 0,
      detail: `${fiveXx} of ${report.traffic.requests} requests of the traffic and ${report.verification.requests} of the checks`,
    },
    { name: 'every request answered', ok: noAnswer === 0, detail: `${noAnswer} connection errors or timeouts (15 s)` },
    { name: 'every kind of request sent', ok: idle.length === 0, detail: idle.length === 0 ? `${KINDS.length} kinds` : `none of ${idle.join(', ')}` },
    {
      name: 'every answer as the model expects',
      ok: report.surpriseCount === 0,
      detail: `${report.surpriseCount} unexpected (status, roles in a token or body, error code)`,
    },
    {
      name: 'bad inputs refused with 4xx',
      ok: bad !== undefined && bad.requests > 0 && bad4xx === bad.requests,
      detail: `${bad4xx} of ${bad?.requests ?? 0}`,
    },
    {
      name: 'no lost sign-ups',
      ok: verification.users > 0 && verification.lost.length === 0,
      detail:
        `${verification.signedIn} of ${verification.users} users signed up (201) signed in afterwards` +
        (verification.lost.length > 0 ? `; not: ${verification.lost.slice(0, 5).join('; ')}` : ''),
    },
    {
      name: 'no phantom sign-ups',
      ok: listedOk,
      detail:
        `the admin API lists ${verification.listedWithTag ?? '?'} users with the soak's tag; ${expectedListed} expected ` +
        `(${verification.users} sign-ups + the admin` +
        (traffic.unsureSignups > 0 ? `, and up to ${traffic.unsureSignups} sign-ups answered 504 or not at all)` : ')'),
    },
    {
      name: 'roles as last acknowledged',
      ok: verification.users > 0 && verification.rolesWrong.length === 0,
      detail:
        `${verification.rolesAsExpected} of ${verification.users} users, after ${traffic.roleChanges} role changes` +
        (unchecked > 0 ? ` (${unchecked} not read: no id known)` : '') +
        (verification.rolesWrong.length > 0 ? `; not: ${verification.rolesWrong.slice(0, 5).join('; ')}` : ''),
    },
    {
      name: `revoked tokens refused by content within ${REVOCATION_GRACE_MS / 1000} s`,
      ok: traffic.lateAccepted.maxMs < REVOCATION_GRACE_MS,
      detail:
        `${traffic.revokedReads} reads with a revoked token, ${traffic.lateAccepted.reads} still accepted` +
        (traffic.lateAccepted.reads > 0 ? `, the latest ${traffic.lateAccepted.maxMs} ms after the revocation` : ''),
    },
    ...SERVICES.map((name) => {
      const memory = report.memory[name];
      return {
        name: `${name} memory settles`,
        ok: memory.endMb <= memory.allowedEndMb,
        detail:
          `VmRSS ${memory.startMb.toFixed(1)} → peak ${memory.peakMb.toFixed(1)} → ${memory.endMb.toFixed(1)} MiB, ` +
          `at most ${memory.allowedEndMb.toFixed(1)} allowed`,
      };
    }),
    {
      name: 'no errors logged',
      ok: errorsLogged.length === 0,
      detail: errorsLogged.length === 0 ? 'none at level error or above' : errorsLogged.join(', '),
    },
  ];
}

async function soak(options: SoakOptions, processes: ProcessSet, database: BenchDatabase, signal: AbortSignal): Promise<SoakReport> {
  const startedAt = Date.now();
  const loadAverageAtStart = os.loadavg().map((load) => Math.round(load * 100) / 100);
  const tag = newTag();
  const admin = newAccount('soak_admin', tag);
  say('Starting auth, content and gateway…');
  const stack = await startStack(processes, database, admin, {
    auth: {
      BCRYPT_COST: String(options.bcryptCost),
      // The throttle stays on, as in use: the traffic keeps its users under the threshold and
      // its lockout probe expects the 429. All traffic comes from one address, so the per-address
      // limit (every failure of every account) is lifted out of the way.
      SIGNIN_MAX_FAILURES: String(THROTTLE_FAILURES),
      SIGNIN_MAX_FAILURES_PER_IP: '1000000',
    },
  });
  await waitUntilIdle(allPids(stack), { timeoutMs: 10_000 });
  const startMb = rssNow(stack);
  say(`Sending ${options.durationSec} s of traffic from ${options.concurrency} clients…`);

  const traffic = new AbortController();
  const stop = () => traffic.abort();
  signal.addEventListener('abort', stop, { once: true });
  let crashed: string | undefined;
  const watch = setInterval(() => {
    crashed ??= exitOf(stack);
    if (crashed) traffic.abort();
  }, 500);
  let warmMb = startMb;
  const warmTimer = setTimeout(() => (warmMb = rssNow(stack)), (options.durationSec * 1000) / 4);
  const window = startWindow(SERVICES.map((name) => ({ name, pid: stack[name].pid })), 500);
  const recorder = new Recorder();
  let result: TrafficResult;
  try {
    result = await runTraffic({
      gatewayUrl: stack.gateway.url,
      concurrency: options.concurrency,
      durationMs: options.durationSec * 1000,
      tag,
      admin,
      recorder,
      signal: traffic.signal,
    });
  } finally {
    clearInterval(watch);
    clearTimeout(warmTimer);
    signal.removeEventListener('abort', stop);
  }
  const measured = window.stop();
  if (signal.aborted) throw new Error('interrupted');
  crashed ??= exitOf(stack);

  say('Traffic stopped; waiting for the services to be idle…');
  await waitUntilIdle(allPids(stack), { timeoutMs: 30_000 });
  await sleep(options.restSec * 1000);
  const endMb = rssNow(stack);

  say(`Checking ${result.users.length} users…`);
  const checkRecorder = new Recorder();
  // A fresh admin token: the traffic's may be close to its expiry after a long soak.
  const { accessToken: adminToken } = await signInAdmin(stack.gateway.url, admin);
  const verification = await verifyUsers(stack.gateway.url, result, adminToken, tag, checkRecorder, Math.min(options.concurrency, 4));
  crashed ??= exitOf(stack);

  const kinds = recorder.stats().map((kind) => ({ ...kind, requestsPerSec: round1(kind.requests / (result.elapsedMs / 1000)) }));
  const requests = kinds.reduce((sum, kind) => sum + kind.requests, 0);
  const statuses: Record<string, number> = {};
  for (const kind of kinds) addStatuses(statuses, kind.statuses);
  const checkStats = checkRecorder.stats();
  const verificationStatuses: Record<string, number> = {};
  for (const kind of checkStats) addStatuses(verificationStatuses, kind.statuses);

  const memory = perService((name): MemoryFigures => {
    const start = startMb[name];
    return {
      startMb: round1(start),
      warmMb: round1(warmMb[name]),
      peakMb: round1(Math.max(start, measured.peakRssMb[name] ?? 0)),
      endMb: round1(endMb[name]),
      allowedEndMb: round1(start + Math.max(RSS_MARGIN_MB, start * RSS_MARGIN_RATIO)),
    };
  });
  const cpuMs = perService((name) => Math.round(measured.cpuMs[name] ?? 0));
  const errorsLogged = perService((name) => stack[name].errorLines());

  const partial: Omit<SoakReport, 'checks' | 'ok'> = {
    version: 1,
    date: new Date(startedAt).toISOString(),
    elapsedSec: Math.round((Date.now() - startedAt) / 1000),
    settings: {
      durationSec: options.durationSec,
      concurrency: options.concurrency,
      bcryptCost: options.bcryptCost,
      smoke: options.smoke,
      signinMaxFailures: THROTTLE_FAILURES,
      restSec: options.restSec,
    },
    machine: { cores: os.availableParallelism(), loadAverageAtStart, node: process.version },
    database: { kind: database.kind, description: database.description },
    traffic: {
      seconds: round1(result.elapsedMs / 1000),
      requests,
      requestsPerSec: round1(requests / (result.elapsedMs / 1000)),
      kinds,
      statuses,
      roleChanges: result.roleChanges,
      usersSignedUp: result.users.length,
      revokedReads: result.revokedReads,
      lateAccepted: result.lateAccepted,
    },
    verification: { ...verification, requests: checkStats.reduce((sum, kind) => sum + kind.requests, 0), statuses: verificationStatuses },
    memory,
    cpuMs,
    errorsLogged,
    surprises: [...recorder.surprises, ...checkRecorder.surprises],
    surpriseCount: recorder.surpriseCount + checkRecorder.surpriseCount,
  };
  const checks = decide(partial, result, verification, crashed);
  return { ...partial, checks, ok: checks.every((check) => check.ok) };
}

async function main(argv: string[]): Promise<number> {
  let options: SoakOptions;
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

  const processes = new ProcessSet();
  const run = superviseRun('soak', processes, say);

  try {
    const database = await prepareDatabase(process.env.DATABASE_URL || undefined);
    run.database = database;
    say(`Database: ${database.description}`);
    const report = await soak(options, processes, database, run.signal);
    await run.stopEverything();
    say(`\n${renderText(report)}`);
    if (options.out) {
      await writeReport(options.out, report);
      say(`Wrote ${options.out}.`);
    }
    return report.ok ? 0 : 1;
  } catch (err) {
    if (run.signal.aborted) return new Promise<number>(() => {}); // the signal handler exits
    process.stderr.write(`The soak failed: ${err instanceof Error ? err.message : String(err)}\n`);
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
