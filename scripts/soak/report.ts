/**
 * The soak's results: the JSON record `--out` writes, and the compact summary printed at the end.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { KindStats, Surprise } from './client';
import type { Verification } from './verify';

/** The services whose memory the soak watches. */
export const SERVICES = ['gateway', 'content', 'auth'] as const;
export type ServiceName = (typeof SERVICES)[number];

/** Resident memory (VmRSS) of one service's process tree, MiB. */
export interface MemoryFigures {
  /** After start-up and the admin's sign-in, before the traffic. */
  startMb: number;
  /** A quarter of the way through the traffic. */
  warmMb: number;
  /** Largest seen during the traffic (sampled every 500 ms). */
  peakMb: number;
  /** After the traffic, once the services were idle and had rested. */
  endMb: number;
  /** The largest `endMb` that passes: `startMb` plus the margin (see main.ts). */
  allowedEndMb: number;
}

/** One check: passed or not, and the figures that decided it. */
export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

/** Everything `pnpm soak --out FILE` writes. */
export interface SoakReport {
  version: 1;
  date: string;
  ok: boolean;
  /** Wall time of the whole soak, start-up and checks included, seconds. */
  elapsedSec: number;
  settings: {
    durationSec: number;
    concurrency: number;
    bcryptCost: number;
    smoke: boolean;
    /** The sign-in throttle's failures per account and address (`SIGNIN_MAX_FAILURES`). */
    signinMaxFailures: number;
    restSec: number;
  };
  machine: { cores: number; loadAverageAtStart: number[]; node: string };
  database: { kind: 'postgres' | 'pglite'; description: string };
  traffic: {
    seconds: number;
    requests: number;
    requestsPerSec: number;
    /** Per kind, with its own rate. */
    kinds: (KindStats & { requestsPerSec: number })[];
    /** Over all kinds. */
    statuses: Record<string, number>;
    roleChanges: number;
    usersSignedUp: number;
    /** Reads with a revoked access token; how many content still accepted, and the latest after the revocation. */
    revokedReads: number;
    lateAccepted: { reads: number; maxMs: number };
  };
  verification: Verification & { requests: number; statuses: Record<string, number> };
  memory: Record<ServiceName, MemoryFigures>;
  /** CPU time each service used during the traffic, ms. */
  cpuMs: Record<ServiceName, number>;
  /** Log lines at level error or above, per service. */
  errorsLogged: Record<ServiceName, number>;
  checks: CheckResult[];
  /** Answers the model did not expect (the first ones in full), traffic and verification. */
  surprises: Surprise[];
  surpriseCount: number;
}

const pad = (value: string | number, width: number) => String(value).padStart(width);

function statusesText(statuses: Record<string, number>): string {
  return Object.entries(statuses)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([status, count]) => `${status}×${count}`)
    .join(' ');
}

/** The summary for the terminal. */
export function renderText(report: SoakReport): string {
  const { traffic, settings } = report;
  const lines = [
    `Traffic: ${traffic.seconds.toFixed(1)} s, ${settings.concurrency} clients, ${traffic.requests} requests, ` +
      `${traffic.requestsPerSec.toFixed(1)} req/s (bcrypt cost ${settings.bcryptCost}; ${report.database.kind})`,
    `  ${'kind'.padEnd(14)}${pad('requests', 9)}${pad('req/s', 8)}${pad('p50 ms', 9)}${pad('p99 ms', 9)}  statuses`,
    ...traffic.kinds.map(
      (kind) =>
        `  ${kind.kind.padEnd(14)}${pad(kind.requests, 9)}${pad(kind.requestsPerSec.toFixed(1), 8)}` +
        `${pad(kind.p50Ms.toFixed(1), 9)}${pad(kind.p99Ms.toFixed(1), 9)}  ${statusesText(kind.statuses)}` +
        (kind.unexpected > 0 ? `  !! ${kind.unexpected} unexpected` : ''),
    ),
    `  ${'all'.padEnd(14)}${pad(traffic.requests, 9)}${pad(traffic.requestsPerSec.toFixed(1), 8)}${' '.repeat(18)}  ${statusesText(traffic.statuses)}`,
    `Memory, VmRSS MiB (start: before the traffic; end: after it, idle, ${settings.restSec} s of rest):`,
    `  ${'service'.padEnd(9)}${pad('start', 8)}${pad('warm', 8)}${pad('peak', 8)}${pad('end', 8)}${pad('allowed', 9)}${pad('CPU s', 8)}`,
    ...SERVICES.map((name) => {
      const memory = report.memory[name];
      return (
        `  ${name.padEnd(9)}${pad(memory.startMb.toFixed(1), 8)}${pad(memory.warmMb.toFixed(1), 8)}${pad(memory.peakMb.toFixed(1), 8)}` +
        `${pad(memory.endMb.toFixed(1), 8)}${pad(`≤${memory.allowedEndMb.toFixed(1)}`, 9)}${pad((report.cpuMs[name] / 1000).toFixed(1), 8)}`
      );
    }),
    'Checks:',
    ...report.checks.map((check) => `  ${check.ok ? 'ok  ' : 'FAIL'}  ${check.name}: ${check.detail}`),
  ];
  if (report.surpriseCount > 0) {
    lines.push(`Unexpected answers (${report.surprises.length} of ${report.surpriseCount}):`);
    for (const surprise of report.surprises) {
      const got = surprise.status === 0 ? 'no answer' : String(surprise.status);
      lines.push(`  [${surprise.kind}] ${surprise.what}: ${got}, expected ${surprise.expected.join('/')}: ${surprise.answer}`);
    }
  }
  const failed = report.checks.filter((check) => !check.ok).length;
  lines.push(failed === 0 ? `Soak passed: ${report.checks.length} checks.` : `Soak FAILED: ${failed} of ${report.checks.length} checks.`);
  return lines.join('\n');
}

/** Writes `report` as JSON to `file`, making its directory. */
export async function writeReport(file: string, report: SoakReport): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
}
