/**
 * `pnpm bench --profile`: where each serving process spends its CPU during a workload. Every
 * process the benchmark starts runs with V8's sampling profiler (`node --cpu-prof`) and writes
 * its profile when it exits; the samples are then attributed to the workloads by time, since a
 * profile's timestamps and `process.hrtime` read the same monotonic clock (microseconds).
 *
 * Self time is grouped by where the code comes from, so a profile answers "is it our code?":
 * the process's own JavaScript (Gatehouse's bundle, or a floor's script), third-party packages
 * (Koa, http-proxy, prom-client…), Node.js's own JavaScript (HTTP, streams, events), native
 * code called from JavaScript (V8 builtins and Node's C++ bindings: the socket writes are
 * there), the garbage collector, and V8's "(program)" (work outside any JavaScript function).
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ProcessName, WorkloadName } from './workloads';

/** The parts of a `.cpuprofile` (Chrome DevTools' format) read here. */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  /** Microseconds, on the clock of `process.hrtime`. */
  startTime: number;
  /** The node id of each sample, in order. */
  samples: number[];
  /** Microseconds since the previous sample (the first: since `startTime`). */
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

/** A name and its share of a process's busy time (0–1). */
export interface CpuShare {
  name: string;
  share: number;
}

/** One process's CPU profile over one workload's measured windows (all runs together). */
export interface ProfileSummary {
  workload: WorkloadName;
  process: ProcessName;
  /** Sampled time not idle, ms: over every thread the process profiled. */
  busyMs: number;
  /** Sampled idle time of those threads, ms. */
  idleMs: number;
  /** Shares of `busyMs`; they add up to 1. */
  categories: Record<Category, number>;
  /** The third-party packages taking the most self time. */
  packages: CpuShare[];
  /** The functions taking the most self time. */
  functions: CpuShare[];
}

/** A measured window on the monotonic clock, µs. */
export interface TimeWindow {
  startUs: number;
  endUs: number;
}

const TOP_PACKAGES = 6;
const TOP_FUNCTIONS = 8;

/** `…/node_modules/.pnpm/koa@2/node_modules/koa/lib/x.js` → `koa`; `@koa/router` for a scoped one. */
function packageOf(url: string): string | undefined {
  const at = url.lastIndexOf('/node_modules/');
  if (at < 0) return undefined;
  const parts = url.slice(at + '/node_modules/'.length).split('/');
  return (parts[0]?.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]) || undefined;
}

/** Where a frame's code comes from, and a short name for the function. */
export function classifyFrame(frame: CpuProfile['nodes'][number]['callFrame']): { category: Category | 'idle'; pkg?: string; label: string } {
  const name = frame.functionName || '(anonymous)';
  if (name === '(idle)') return { category: 'idle', label: name };
  if (name === '(garbage collector)') return { category: 'gc', label: name };
  if (name === '(program)' || name === '(root)') return { category: 'program', label: '(program)' };
  if (frame.url === '') return { category: 'native', label: `${name} (native)` };
  const line = frame.lineNumber + 1;
  if (frame.url.startsWith('node:')) return { category: 'node', label: `${name} (${frame.url}:${line})` };
  const pkg = packageOf(frame.url);
  if (pkg) return { category: 'packages', pkg, label: `${name} (${pkg})` };
  return { category: 'own', label: `${name} (${path.basename(frame.url.replace(/^file:\/\//, ''))}:${line})` };
}

function topShares(times: Map<string, number>, busyUs: number, count: number): CpuShare[] {
  return [...times]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, us]) => ({ name, share: busyUs > 0 ? us / busyUs : 0 }));
}

/**
 * Self time of the samples of `profiles` (the threads of one process) that fall in `windows`,
 * grouped by category, package and function. Each sample counts the time since the sample
 * before it.
 */
export function summarizeProfiles(
  profiles: readonly CpuProfile[],
  windows: readonly TimeWindow[],
): Omit<ProfileSummary, 'workload' | 'process'> {
  const byCategory = new Map<Category, number>();
  const byPackage = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let busyUs = 0;
  let idleUs = 0;
  for (const profile of profiles) {
    const frames = new Map(profile.nodes.map((node) => [node.id, classifyFrame(node.callFrame)]));
    let at = profile.startTime;
    profile.samples.forEach((id, index) => {
      const delta = profile.timeDeltas[index] ?? 0;
      at += delta;
      const frame = frames.get(id);
      if (!frame || !windows.some((window) => at > window.startUs && at <= window.endUs)) return;
      if (frame.category === 'idle') {
        idleUs += delta;
        return;
      }
      busyUs += delta;
      byCategory.set(frame.category, (byCategory.get(frame.category) ?? 0) + delta);
      if (frame.pkg) byPackage.set(frame.pkg, (byPackage.get(frame.pkg) ?? 0) + delta);
      byFunction.set(frame.label, (byFunction.get(frame.label) ?? 0) + delta);
    });
  }
  const categories = Object.fromEntries(CATEGORIES.map((category) => [category, busyUs > 0 ? (byCategory.get(category) ?? 0) / busyUs : 0]));
  return {
    busyMs: busyUs / 1000,
    idleMs: idleUs / 1000,
    categories: categories as Record<Category, number>,
    packages: topShares(byPackage, busyUs, TOP_PACKAGES),
    functions: topShares(byFunction, busyUs, TOP_FUNCTIONS),
  };
}

/** Every `.cpuprofile` in `dir` (one per thread and process that ran there); none when it does not exist. */
export async function readProfiles(dir: string): Promise<CpuProfile[]> {
  const files = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(
    files
      .filter((file) => file.endsWith('.cpuprofile'))
      .sort()
      .map(async (file) => JSON.parse(await readFile(path.join(dir, file), 'utf8')) as CpuProfile),
  );
}

/**
 * The profile of every process serving each workload, over that workload's measured windows,
 * from the profiles the processes wrote under `dir/<process>/`.
 */
export async function profileWorkloads(
  dir: string,
  workloads: readonly { name: WorkloadName; servedBy: readonly ProcessName[]; windows: readonly TimeWindow[] }[],
): Promise<ProfileSummary[]> {
  const cache = new Map<ProcessName, Promise<CpuProfile[]>>();
  const profilesOf = (name: ProcessName) => {
    let profiles = cache.get(name);
    if (!profiles) cache.set(name, (profiles = readProfiles(path.join(dir, name))));
    return profiles;
  };
  const summaries: ProfileSummary[] = [];
  for (const workload of workloads) {
    for (const name of workload.servedBy) {
      const profiles = await profilesOf(name);
      if (profiles.length === 0) continue;
      summaries.push({ workload: workload.name, process: name, ...summarizeProfiles(profiles, workload.windows) });
    }
  }
  return summaries;
}
