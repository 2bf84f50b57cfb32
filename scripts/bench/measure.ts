/**
 * What the benchmark measures besides autocannon's figures: CPU time and resident memory of the
 * service processes, read from Linux's /proc, and the speed of one thread of bcryptjs.
 *
 * A service is measured as its whole process tree (the process and its descendants), so a
 * service that forks workers (`WORKERS=n`, node:cluster) is counted in full. Worker *threads*
 * (the auth service's bcrypt pool) are already part of their process's figures.
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

/** Milliseconds per clock tick of `utime`/`stime` in /proc/<pid>/stat (`getconf CLK_TCK`, 100 nearly everywhere). */
const MS_PER_TICK = 1000 / readClockTicks();

function readClockTicks(): number {
  try {
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isInteger(ticks) && ticks > 0 ? ticks : 100;
  } catch {
    return 100;
  }
}

/** Throws unless this machine has the /proc files the measurements read (Linux). */
export function assertProcAvailable(): void {
  if (!existsSync('/proc/self/stat') || !existsSync('/proc/self/status')) {
    throw new Error('the benchmark reads CPU and memory from /proc and so runs on Linux only');
  }
}

interface ProcStat {
  ppid: number;
  /** User + system CPU time of the process (all its threads), in ms. */
  cpuMs: number;
}

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // exited
  }
  // The command name (field 2) is in parentheses and may contain spaces or parentheses itself;
  // the fields after the last ')' start with field 3 (state).
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(fields[1]);
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return { ppid, cpuMs: (utime + stime) * MS_PER_TICK };
}

/** `pid` and all its living descendants. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (!stat) continue;
    const siblings = children.get(stat.ppid) ?? [];
    siblings.push(Number(entry));
    children.set(stat.ppid, siblings);
  }
  const tree: number[] = [];
  const queue = [pid];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    tree.push(next);
    queue.push(...(children.get(next) ?? []));
  }
  return tree;
}

/** CPU time (user + system) used so far by the processes `pids`, in ms. */
export function cpuMsOf(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + (readStat(pid)?.cpuMs ?? 0), 0);
}

function statusField(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0; // exited
  }
}

/** Resident memory of the processes `pids` now, in MiB. */
export function rssMbOf(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + statusField(pid, 'VmRSS'), 0) / 1024;
}

/** The kernel's high-water mark of resident memory (VmHWM) of the processes `pids`, summed, in MiB. */
export function hwmMbOf(pids: readonly number[]): number {
  return pids.reduce((sum, pid) => sum + statusField(pid, 'VmHWM'), 0) / 1024;
}

/** A named process tree to measure, by the pid of its root. */
export interface MeasuredProcess {
  name: string;
  pid: number;
}

/** CPU and memory of several process trees over one window, from {@link startWindow}. */
export interface WindowMeasurement {
  /** CPU ms each tree used during the window. */
  cpuMs: Record<string, number>;
  /** Largest resident memory of each tree seen while sampling, in MiB. */
  peakRssMb: Record<string, number>;
}

/**
 * Starts measuring `processes`: notes their CPU time now and samples their resident memory
 * every `sampleMs` until the returned `stop()`, which reports the CPU used since and the peaks.
 *
 * @remarks The process trees are listed at the start; a worker forked during the window is
 * not counted (services fork theirs at start-up, so this only matters for a replaced worker).
 */
export function startWindow(processes: readonly MeasuredProcess[], sampleMs = 250): { stop(): WindowMeasurement } {
  const trees = processes.map((measured) => ({ name: measured.name, pids: processTree(measured.pid) }));
  const cpuStart = new Map(trees.map((tree) => [tree.name, cpuMsOf(tree.pids)]));
  const peakRssMb: Record<string, number> = {};
  const sample = () => {
    for (const tree of trees) peakRssMb[tree.name] = Math.max(peakRssMb[tree.name] ?? 0, rssMbOf(tree.pids));
  };
  sample();
  const timer = setInterval(sample, sampleMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      const cpuMs: Record<string, number> = {};
      for (const tree of trees) cpuMs[tree.name] = cpuMsOf(tree.pids) - (cpuStart.get(tree.name) ?? 0);
      return { cpuMs, peakRssMb };
    },
  };
}

/** A measured window on the machine's monotonic clock, µs. */
export interface TimeWindow {
  startUs: number;
  endUs: number;
}

/**
 * Now on the monotonic clock, µs: the clock of `process.hrtime` in every process of the
 * machine, and of the timestamps in V8's CPU profiles.
 */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/**
 * Resolves once the processes `pids` together use less than `maxCores` of CPU over two
 * consecutive `sliceMs` slices, or after `timeoutMs`; with the milliseconds it waited.
 *
 * @remarks autocannon stops sending at the end of a run, but a server still works through the
 * requests it accepted (a queue of bcrypt jobs can take seconds); measuring the next window
 * only once that is done keeps one run's backlog out of the next one's figures.
 */
export async function waitUntilIdle(pids: readonly number[], options: { maxCores?: number; sliceMs?: number; timeoutMs?: number } = {}): Promise<number> {
  const { maxCores = 0.15, sliceMs = 250, timeoutMs = 30_000 } = options;
  const started = Date.now();
  let quietSlices = 0;
  let before = cpuMsOf(pids);
  while (quietSlices < 2 && Date.now() - started < timeoutMs) {
    await new Promise((resolve) => setTimeout(resolve, sliceMs));
    const now = cpuMsOf(pids);
    quietSlices = now - before < maxCores * sliceMs ? quietSlices + 1 : 0;
    before = now;
  }
  return Date.now() - started;
}

/** The part of bcryptjs the reference measurement uses. */
interface Bcrypt {
  hash(password: string, rounds: number): Promise<string>;
  compare(password: string, hash: string): Promise<boolean>;
}

function isBcrypt(value: unknown): value is Bcrypt {
  return (
    typeof value === 'object' &&
    value !== null &&
    'hash' in value &&
    typeof value.hash === 'function' &&
    'compare' in value &&
    typeof value.compare === 'function'
  );
}

/**
 * bcryptjs as the auth service has it (a dependency of services/auth, not of the workspace
 * root, so it is resolved from there: the reference is the very library sign-in runs).
 */
function loadBcrypt(root: string): Bcrypt {
  const requireFromAuth = createRequire(path.join(root, 'services/auth/package.json'));
  const bcrypt: unknown = requireFromAuth('bcryptjs');
  if (!isBcrypt(bcrypt)) throw new Error('bcryptjs from services/auth has no hash/compare');
  return bcrypt;
}

/** Result of {@link measureBcrypt}. */
export interface BcryptMeasurement {
  cost: number;
  compares: number;
  /** Sequential `bcrypt.compare` calls per second on this one thread. */
  comparesPerSec: number;
}

/**
 * Times `compares` sequential `bcrypt.compare` calls of bcryptjs at `cost` on the calling
 * thread: what one core does for sign-in, the yardstick of the sign-in workload.
 */
export async function measureBcrypt(root: string, cost: number, compares: number): Promise<BcryptMeasurement> {
  const bcrypt = loadBcrypt(root);
  const password = 'bench-reference-Correct-Horse';
  const hash = await bcrypt.hash(password, cost);
  await bcrypt.compare(password, hash); // warm-up: JIT, not counted
  const started = process.hrtime.bigint();
  for (let i = 0; i < compares; i += 1) await bcrypt.compare(password, hash);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { cost, compares, comparesPerSec: compares / seconds };
}

/** Median of `values` (mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] ?? Number.NaN;
  return sorted.length % 2 === 1 ? upper : ((sorted[middle - 1] ?? upper) + upper) / 2;
}
