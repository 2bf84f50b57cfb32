/**
 * Runs one workload with autocannon: a warm-up that is not counted, then the measured run,
 * with the CPU and memory of the processes measured over exactly that window.
 */
import autocannon from 'autocannon';
import { nowUs, processTree, startWindow, waitUntilIdle, type MeasuredProcess, type TimeWindow } from './measure';
import type { ProcessName, Workload, WorkloadName } from './workloads';

/** How hard and how long each workload runs. */
export interface LoadSettings {
  durationSec: number;
  warmupSec: number;
  connections: number;
}

/** Latency and outcome of a low-rate probe run next to a workload. */
export interface ProbeResult {
  requests: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  non2xx: number;
  errors: number;
}

/** Everything measured in one workload's measured window. */
export interface WorkloadRun {
  name: WorkloadName;
  /** Responses received. */
  requests: number;
  durationSec: number;
  requestsPerSec: number;
  /** Of 2xx responses (autocannon records no latency for the others). */
  latency: { p50Ms: number; p99Ms: number; maxMs: number };
  non2xx: number;
  /** Responses by status code. */
  statusCodes: Record<string, number>;
  /** Connection errors, timeouts included. */
  errors: number;
  timeouts: number;
  /** CPU ms each measured process used in the window (the idle ones too). */
  cpuMs: Partial<Record<ProcessName, number>>;
  /** CPU ms of the processes serving the workload, per response. */
  cpuMsPerRequest: number;
  /** CPU ms of the benchmark process itself (autocannon), per response. */
  clientCpuMsPerRequest: number;
  /** Largest resident memory of each process seen in the window, MiB. */
  peakRssMb: Partial<Record<ProcessName, number>>;
  /** How long the processes took to become idle before the measured window (work left from the warm-up). */
  settleMs: number;
  /** The measured window, on the clock of CPU profiles too. */
  measuredWindow: TimeWindow;
  /** `GET /healthz` at auth at a low rate: before the workload, and while it runs. */
  authHealth?: { atRest: ProbeResult; duringLoad: ProbeResult };
}

/** Where the workload's processes and the auth service's health check are. */
export interface RunTargets {
  processes: readonly (MeasuredProcess & { name: ProcessName })[];
  authHealthUrl: string;
}

/** Requests per second of the health probe. */
const PROBE_RATE = 20;

/** Runs autocannon until done, or until `signal` aborts (then with what it has so far). */
export function runAutocannon(options: autocannon.Options, signal: AbortSignal): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    const instance = autocannon(options, (err: unknown, result: autocannon.Result) => {
      signal.removeEventListener('abort', stop);
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(result);
    });
    const stop = () => instance.stop();
    signal.addEventListener('abort', stop, { once: true });
  });
}

function statusCodesOf(result: autocannon.Result): Record<string, number> {
  const codes: Record<string, number> = {};
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) codes[code] = stats.count ?? 0;
  return codes;
}

function probeResultOf(result: autocannon.Result): ProbeResult {
  return {
    requests: result.requests.total,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    maxMs: result.latency.max,
    non2xx: result.non2xx,
    errors: result.errors,
  };
}

function probe(url: string, durationSec: number, signal: AbortSignal): Promise<autocannon.Result> {
  return runAutocannon({ url, connections: 1, overallRate: PROBE_RATE, duration: durationSec }, signal);
}

/**
 * Warms `workload` up for `settings.warmupSec`, then measures it for `settings.durationSec`
 * with `settings.connections` connections (pipelining 1).
 */
export async function runWorkload(
  workload: Workload,
  settings: LoadSettings,
  targets: RunTargets,
  signal: AbortSignal,
): Promise<WorkloadRun> {
  const load = (durationSec: number): autocannon.Options => ({
    url: workload.url,
    connections: settings.connections,
    pipelining: 1,
    duration: durationSec,
    requests: workload.requests(),
  });
  if (settings.warmupSec > 0) {
    await workload.prepare?.(settings.connections);
    await runAutocannon(load(settings.warmupSec), signal);
  }
  await workload.prepare?.(settings.connections);
  const settleMs = await waitUntilIdle(targets.processes.flatMap((target) => processTree(target.pid)));
  const atRest = workload.probesAuthHealth
    ? await probe(targets.authHealthUrl, Math.min(2, settings.durationSec), signal)
    : undefined;

  const window = startWindow(targets.processes);
  const startUs = nowUs();
  const clientCpuStart = process.cpuUsage();
  const [result, duringLoad] = await Promise.all([
    runAutocannon(load(settings.durationSec), signal),
    workload.probesAuthHealth ? probe(targets.authHealthUrl, settings.durationSec, signal) : undefined,
  ]);
  const clientCpu = process.cpuUsage(clientCpuStart);
  const endUs = nowUs();
  const measured = window.stop();

  const requests = result.requests.total;
  const perRequest = (ms: number) => (requests > 0 ? ms / requests : Number.NaN);
  const cpuMs: Partial<Record<ProcessName, number>> = {};
  const peakRssMb: Partial<Record<ProcessName, number>> = {};
  for (const { name } of targets.processes) {
    cpuMs[name] = measured.cpuMs[name] ?? 0;
    peakRssMb[name] = measured.peakRssMb[name] ?? 0;
  }
  const servingCpuMs = workload.servedBy.reduce((sum, name) => sum + (cpuMs[name] ?? 0), 0);
  return {
    name: workload.name,
    requests,
    durationSec: result.duration,
    requestsPerSec: requests / result.duration,
    latency: { p50Ms: result.latency.p50, p99Ms: result.latency.p99, maxMs: result.latency.max },
    non2xx: result.non2xx,
    statusCodes: statusCodesOf(result),
    errors: result.errors,
    timeouts: result.timeouts,
    cpuMs,
    cpuMsPerRequest: perRequest(servingCpuMs),
    clientCpuMsPerRequest: perRequest((clientCpu.user + clientCpu.system) / 1000),
    peakRssMb,
    settleMs,
    measuredWindow: { startUs, endUs },
    ...(atRest && duringLoad ? { authHealth: { atRest: probeResultOf(atRest), duringLoad: probeResultOf(duringLoad) } } : {}),
  };
}
