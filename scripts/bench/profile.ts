/**
 * `pnpm bench --profile`: where each serving process spends its time during a workload. Every
 * process the benchmark starts runs with V8's sampling profiler (`node --cpu-prof`) and writes
 * its profiles (one per thread) when it exits; the samples are then attributed to the
 * workloads by time, since a profile's timestamps and `process.hrtime` read the same monotonic
 * clock.
 *
 * Self time is grouped by where the code comes from, so a profile answers "is it our code?":
 * the process's own JavaScript (Gatehouse's bundle, or a floor's script), third-party packages
 * (Koa, http-proxy, prom-client…), Node.js's own JavaScript (HTTP, streams, events), code
 * without a script (V8's builtins and Node's C++ bindings: the socket writes are there), the
 * garbage collector, and V8's "(program)" (work outside any JavaScript function).
 *
 * @remarks The profiler samples by the clock, not by CPU: a sample's time is the interval to
 * the next one, which includes any time the thread waited for a core. So the figures are
 * shares of sampled time, not CPU time; the benchmark's CPU figures come from `/proc`.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { TimeWindow } from './measure';
import type { ProcessName, WorkloadName } from './workloads';

/** The parts of a `.cpuprofile` (Chrome DevTools' format) read here. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  /** µs, on the clock of `process.hrtime`. */
  startTime: number;
  /** The node id of each sample, in order. */
  samples: number[];
  /** µs from the previous sample (the first: from `startTime`) to this one. */
  timeDeltas: number[];
}

export const CATEGORIES = ['own', 'packages', 'node', 'native', 'gc', 'program'] as const;
export type Category = (typeof CATEGORIES)[number];

/** What the report calls each category. */
export const CATEGORY_TITLES: Record<Category, string> = {
  own: 'own code',
  packages: 'packages',
  node: 'Node.js',
  native: 'native',
  gc: 'GC',
  program: '(program)',
};

/** A name and its share of a process's sampled time (0–1). */
export interface TimeShare {
  name: string;
  share: number;
}

/** One process's profiles over one workload's measured windows (all runs together). */
export interface ProfileSummary {
  workload: WorkloadName;
  process: ProcessName;
  /** Profiles read: one per thread (and per process, with `WORKERS`). */
  threads: number;
  /** Samples not idle, over all those threads. */
  samples: number;
  /** Time of those samples, ms, summed over the threads. */
  sampledMs: number;
  /** Shares of `sampledMs`; they add up to 1 (all 0 without samples). */
  categories: Record<Category, number>;
  /** The third-party packages with the most self time. */
  packages: TimeShare[];
  /** The functions with the most self time. */
  functions: TimeShare[];
}

const TOP_PACKAGES = 5;
const TOP_FUNCTIONS = 6;

/** `…/node_modules/.pnpm/koa@2/node_modules/koa/lib/x.js` → `koa`; `@koa/router` for a scoped one. */
function packageOf(url: string): string | undefined {
  const at = url.lastIndexOf('/node_modules/');
  if (at < 0) return undefined;
  const parts = url.slice(at + '/node_modules/'.length).split('/');
  return (parts[0]?.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]) || undefined;
}

/**
 * Frames of a thread that waits for work rather than doing it: the event loop's idle time, and
 * a worker thread of piscina (auth's password threads) blocked in `Atomics.wait` for a task.
 */
function isWaiting(frame: CpuProfile['nodes'][number]['callFrame']): boolean {
  return frame.functionName === '(idle)' || (frame.functionName === 'atomicsWaitLoop' && packageOf(frame.url) === 'piscina');
}

/** Where a frame's code comes from, and a short name for the function. */
export function classifyFrame(frame: CpuProfile['nodes'][number]['callFrame']): { category: Category | 'idle'; pkg?: string; label: string } {
  const name = frame.functionName || '(anonymous)';
  if (isWaiting(frame)) return { category: 'idle', label: name };
  if (name === '(garbage collector)') return { category: 'gc', label: name };
  if (name === '(program)' || name === '(root)') return { category: 'program', label: '(program)' };
  if (frame.url === '') return { category: 'native', label: `${name} (native)` };
  const line = frame.lineNumber + 1;
  if (frame.url.startsWith('node:')) return { category: 'node', label: `${name} (${frame.url}:${line})` };
  const pkg = packageOf(frame.url);
  if (pkg) return { category: 'packages', pkg, label: `${name} (${pkg})` };
  return { category: 'own', label: `${name} (${path.basename(frame.url.replace(/^file:\/\//, ''))}:${line})` };
}

function topShares(times: Map<string, number>, totalUs: number, count: number): TimeShare[] {
  return [...times]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, us]) => ({ name, share: totalUs > 0 ? us / totalUs : 0 }));
}

/**
 * Self time of the samples of `profiles` (the threads of one process) taken in `windows`,
 * grouped by category, package and function. A sample stands for the time to the next one
 * (as in Chrome DevTools; the last one, for the time since the one before).
 */
export function summarizeProfiles(
  profiles: readonly CpuProfile[],
  windows: readonly TimeWindow[],
): Omit<ProfileSummary, 'workload' | 'process'> {
  const byCategory = new Map<Category, number>();
  const byPackage = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let samples = 0;
  let sampledUs = 0;
  for (const profile of profiles) {
    const frames = new Map(profile.nodes.map((node) => [node.id, classifyFrame(node.callFrame)]));
    let at = profile.startTime;
    profile.samples.forEach((id, index) => {
      at += profile.timeDeltas[index] ?? 0;
      const frame = frames.get(id);
      if (!frame || frame.category === 'idle' || !windows.some((window) => at >= window.startUs && at < window.endUs)) return;
      const us = profile.timeDeltas[index + 1] ?? profile.timeDeltas[index] ?? 0;
      samples += 1;
      sampledUs += us;
      byCategory.set(frame.category, (byCategory.get(frame.category) ?? 0) + us);
      if (frame.pkg) byPackage.set(frame.pkg, (byPackage.get(frame.pkg) ?? 0) + us);
      byFunction.set(frame.label, (byFunction.get(frame.label) ?? 0) + us);
    });
  }
  const categories = Object.fromEntries(CATEGORIES.map((category) => [category, sampledUs > 0 ? (byCategory.get(category) ?? 0) / sampledUs : 0]));
  return {
    threads: profiles.length,
    samples,
    sampledMs: sampledUs / 1000,
    categories: categories as Record<Category, number>,
    packages: topShares(byPackage, sampledUs, TOP_PACKAGES),
    functions: topShares(byFunction, sampledUs, TOP_FUNCTIONS),
  };
}

function isCpuProfile(value: unknown): value is CpuProfile {
  if (typeof value !== 'object' || value === null) return false;
  const { nodes, startTime, samples, timeDeltas } = value as Record<string, unknown>;
  return (
    Array.isArray(nodes) && typeof startTime === 'number' && Array.isArray(samples) && Array.isArray(timeDeltas) && samples.length === timeDeltas.length
  );
}

/**
 * The `.cpuprofile` files in `dir` (one per thread and process that ran there), and how many
 * could not be read (a process killed while writing leaves a truncated one).
 */
export async function readProfiles(dir: string): Promise<{ profiles: CpuProfile[]; unreadable: number }> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((file) => file.endsWith('.cpuprofile')).sort();
  const parsed = await Promise.all(
    files.map(async (file) => {
      try {
        const profile: unknown = JSON.parse(await readFile(path.join(dir, file), 'utf8'));
        return isCpuProfile(profile) ? profile : undefined;
      } catch {
        return undefined;
      }
    }),
  );
  const profiles = parsed.filter((profile) => profile !== undefined);
  return { profiles, unreadable: files.length - profiles.length };
}

/**
 * The profile of every process serving each workload, over that workload's measured windows,
 * from the profiles the processes wrote under `dir/<process>/`; and what is missing: processes
 * that left no profile, and files that could not be read.
 */
export async function profileWorkloads(
  dir: string,
  workloads: readonly { name: WorkloadName; servedBy: readonly ProcessName[]; windows: readonly TimeWindow[] }[],
): Promise<{ summaries: ProfileSummary[]; problems: string[] }> {
  const read = new Map<ProcessName, Promise<{ profiles: CpuProfile[]; unreadable: number }>>();
  const profilesOf = (name: ProcessName) => {
    let result = read.get(name);
    if (!result) read.set(name, (result = readProfiles(path.join(dir, name))));
    return result;
  };
  const summaries: ProfileSummary[] = [];
  for (const workload of workloads) {
    for (const name of workload.servedBy) {
      const { profiles } = await profilesOf(name);
      if (profiles.length > 0) summaries.push({ workload: workload.name, process: name, ...summarizeProfiles(profiles, workload.windows) });
    }
  }
  const problems: string[] = [];
  for (const [name, result] of read) {
    const { profiles, unreadable } = await result;
    if (profiles.length === 0) problems.push(`${name} left no readable profile in ${path.join(dir, name)}`);
    else if (unreadable > 0) problems.push(`${name}: ${unreadable} of its profiles could not be read`);
  }
  return { summaries, problems };
}
