/**
 * The benchmark's results: the JSON record of every figure, medians over the runs, and their
 * renderings as a terminal table, a Markdown report and an SVG bar chart of the ratios to the
 * baseline (hand-written SVG, no chart library).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { median, type BcryptMeasurement } from './measure';
import { CATEGORIES, CATEGORY_TITLES, type ProfileSummary, type TimeShare } from './profile';
import type { ProbeResult, WorkloadRun } from './runner';
import { PROCESS_NAMES, type ProcessName, type WorkloadName } from './workloads';

/** A workload's figures in one run, with its throughput relative to that run's baseline. */
export interface RatedWorkloadRun extends WorkloadRun {
  ratioToBaseline: number;
}

/** One pass over the workload list. */
export interface RunRecord {
  run: number;
  /** One thread of bcryptjs, timed just before the sign-in workload (absent when it was not run). */
  bcrypt?: BcryptMeasurement;
  workloads: RatedWorkloadRun[];
}

/** A workload over all runs: medians, except counts of failures, which are totals. */
export interface WorkloadSummary {
  name: WorkloadName;
  title: string;
  servedBy: readonly ProcessName[];
  runs: number;
  requestsPerSec: number;
  /** Median of the per-run ratios of requests/s to the baseline's requests/s. */
  ratioToBaseline: number;
  requests: number;
  p50Ms: number;
  p99Ms: number;
  cpuMsPerRequest: number;
  /** Totals over all runs. */
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  /** Largest over all runs, MiB. */
  peakRssMb: Partial<Record<ProcessName, number>>;
}

/** Everything `pnpm bench` writes to latest.json. */
export interface BenchReport {
  version: 1;
  date: string;
  /** Wall time of the whole benchmark, seconds. */
  elapsedSec: number;
  machine: {
    cores: number;
    cpuModel: string;
    memoryMb: number;
    node: string;
    platform: string;
    loadAverageAtStart: number[];
  };
  database: { kind: 'postgres' | 'pglite'; description: string };
  settings: {
    runs: number;
    durationSec: number;
    warmupSec: number;
    connections: number;
    pipelining: 1;
    bcryptCost: number;
    /** Users the refresh workloads' sessions are spread over. */
    refreshUsers: number;
    smoke: boolean;
    /** How the services ran: bundled by `pnpm build`, or from TypeScript through tsx. */
    runtime: 'built' | 'tsx';
    /** NODE_OPTIONS of the built services (the Docker image's). */
    nodeOptions?: string;
    /** MALLOC_ARENA_MAX of the built services (the Docker image's), when it sets one. */
    mallocArenaMax?: string;
    /** Options before the script in each built service's docker-compose.yml command. */
    nodeFlags?: Record<string, string[]>;
    /** `WORKERS` of the gateway and the content service (absent in reports before the option). */
    workers?: number;
    /** Whether the processes ran under V8's sampling profiler (`--profile`). */
    profiled?: boolean;
    workloads: WorkloadName[];
  };
  workloads: WorkloadSummary[];
  /** Sign-in requests/s against compares/s of one bcryptjs thread at the same cost. */
  signinVsBcrypt?: {
    bcryptCost: number;
    bcryptComparesPerSec: number;
    signinRequestsPerSec: number;
    /** Median of the per-run ratios. */
    ratio: number;
    target: number;
    met: boolean;
    /** CPU the auth service used during the sign-in workload, in cores (median): how much of the machine it got. */
    authCores: number;
  };
  /** `GET /healthz` at auth at a low rate, at rest and during the sign-in workload (medians). */
  authHealth?: { atRestP99Ms: number; duringSigninP50Ms: number; duringSigninP99Ms: number; requests: number; non2xx: number; errors: number };
  /** Peak resident memory per process over the whole benchmark, MiB: sampled, and the kernel's high-water mark. */
  memory: Partial<Record<ProcessName, { peakRssMb: number; vmHwmMb: number }>>;
  /** Log lines at level error or above, per service, over the whole benchmark. */
  errorsLogged: Partial<Record<ProcessName, number>>;
  /** With `--profile`: where each serving process spent its time in each workload's measured windows. */
  profiles?: ProfileSummary[];
  /** With `--profile`: processes whose profiles are missing or could not be read. */
  profileProblems?: string[];
  runs: RunRecord[];
}

/** `auth: --max-old-space-size=192, content: none, …` */
function nodeFlagsText(flags: Record<string, string[]> | undefined): string {
  const entries = Object.entries(flags ?? {});
  if (entries.length === 0) return 'none';
  return entries.map(([service, list]) => `${service}: ${list.length > 0 ? list.map((flag) => `\`${flag}\``).join(' ') : 'none'}`).join(', ');
}

/** The throughput sign-in should reach, as a multiple of one bcryptjs thread. */
export const SIGNIN_TARGET_RATIO = 1.7;
/** The throughput content should reach for GET /api/test/mod, as a ratio to the baseline. */
const CONTENT_TARGET_RATIO = 0.25;
/** The p99 latency, in ms, the gateway should keep for GET /api/test/mod. */
const GATEWAY_TARGET_P99_MS = 10;

const sum = (values: readonly number[]) => values.reduce((total, value) => total + value, 0);

/** Medians and totals of each workload over `runs`, in the order of `order`. */
export function summarizeWorkloads(
  runs: readonly RunRecord[],
  order: readonly { name: WorkloadName; title: string; servedBy: readonly ProcessName[] }[],
): WorkloadSummary[] {
  return order.flatMap((workload): WorkloadSummary[] => {
    const results = runs.flatMap((run) => run.workloads.filter((result) => result.name === workload.name));
    if (results.length === 0) return [];
    const statusCodes: Record<string, number> = {};
    const peakRssMb: Partial<Record<ProcessName, number>> = {};
    for (const result of results) {
      for (const [code, count] of Object.entries(result.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + count;
      for (const name of PROCESS_NAMES) {
        const mb = result.peakRssMb[name];
        if (mb !== undefined) peakRssMb[name] = Math.max(peakRssMb[name] ?? 0, mb);
      }
    }
    const of = (pick: (result: RatedWorkloadRun) => number) => median(results.map(pick));
    return [
      {
        ...workload,
        runs: results.length,
        requestsPerSec: of((result) => result.requestsPerSec),
        ratioToBaseline: of((result) => result.ratioToBaseline),
        requests: of((result) => result.requests),
        p50Ms: of((result) => result.latency.p50Ms),
        p99Ms: of((result) => result.latency.p99Ms),
        cpuMsPerRequest: of((result) => result.cpuMsPerRequest),
        non2xx: sum(results.map((result) => result.non2xx)),
        errors: sum(results.map((result) => result.errors)),
        timeouts: sum(results.map((result) => result.timeouts)),
        statusCodes,
        peakRssMb,
      },
    ];
  });
}

/** Sign-in against bcrypt, from the runs that measured both; undefined when none did. */
export function summarizeSignin(runs: readonly RunRecord[], bcryptCost: number): BenchReport['signinVsBcrypt'] {
  const pairs = runs.flatMap((run) => {
    const signin = run.workloads.find((result) => result.name === 'signin');
    if (!signin || !run.bcrypt) return [];
    const authCores = (signin.cpuMs.auth ?? 0) / (signin.durationSec * 1000);
    return [{ signin: signin.requestsPerSec, bcrypt: run.bcrypt.comparesPerSec, authCores }];
  });
  if (pairs.length === 0) return undefined;
  const ratio = median(pairs.map((pair) => pair.signin / pair.bcrypt));
  return {
    bcryptCost,
    bcryptComparesPerSec: median(pairs.map((pair) => pair.bcrypt)),
    signinRequestsPerSec: median(pairs.map((pair) => pair.signin)),
    ratio,
    target: SIGNIN_TARGET_RATIO,
    met: ratio >= SIGNIN_TARGET_RATIO,
    authCores: median(pairs.map((pair) => pair.authCores)),
  };
}

/** The health probe's figures over the runs; undefined when the sign-in workload was not run. */
export function summarizeAuthHealth(runs: readonly RunRecord[]): BenchReport['authHealth'] {
  const probes = runs.flatMap((run) => run.workloads.flatMap((result) => (result.authHealth ? [result.authHealth] : [])));
  if (probes.length === 0) return undefined;
  const during: ProbeResult[] = probes.map((probe) => probe.duringLoad);
  return {
    atRestP99Ms: median(probes.map((probe) => probe.atRest.p99Ms)),
    duringSigninP50Ms: median(during.map((probe) => probe.p50Ms)),
    duringSigninP99Ms: median(during.map((probe) => probe.p99Ms)),
    requests: sum(during.map((probe) => probe.requests)),
    non2xx: sum(during.map((probe) => probe.non2xx)),
    errors: sum(during.map((probe) => probe.errors)),
  };
}

/**
 * Why a smoke run fails: workloads with connection errors or timeouts, or with non-2xx answers
 * (every workload expects 2xx only), the health probe included. Empty when all is well.
 */
export function findFailures(report: BenchReport): string[] {
  const failures = report.workloads.flatMap((workload) => {
    const problems = [
      workload.errors > 0 ? `${workload.errors} errors (${workload.timeouts} timeouts)` : '',
      workload.non2xx > 0 ? `${workload.non2xx} non-2xx answers ${JSON.stringify(workload.statusCodes)}` : '',
      workload.requests > 0 ? '' : 'no answers at all',
    ].filter(Boolean);
    return problems.length > 0 ? [`${workload.name}: ${problems.join(', ')}`] : [];
  });
  const health = report.authHealth;
  if (health && (health.errors > 0 || health.non2xx > 0)) {
    failures.push(`auth /healthz probe: ${health.errors} errors, ${health.non2xx} non-2xx`);
  }
  return failures;
}

/** Formatting of figures for people. */
function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

function requestsPerSec(value: number): string {
  return Number.isFinite(value) ? (value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1)) : '–';
}

function ratio(value: number): string {
  return Number.isFinite(value) ? `${value >= 0.1 ? value.toFixed(2) : value.toPrecision(2)}×` : '–';
}

/** autocannon measures latency in whole milliseconds: 0 is under one. */
function milliseconds(value: number): string {
  if (!Number.isFinite(value)) return '–';
  if (value === 0) return '<1';
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

function cpuPerRequest(value: number): string {
  return Number.isFinite(value) ? value.toPrecision(3) : '–';
}

function percent(share: number): string {
  return `${Math.round(share * 100)} %`;
}

/**
 * Below this many samples (0.5 s at the profiler's 10 ms), a profile's shares are left out:
 * a handful of samples says little.
 */
const MIN_PROFILE_SAMPLES = 50;

function hasEnoughSamples(summary: ProfileSummary): boolean {
  return summary.samples >= MIN_PROFILE_SAMPLES;
}

/** `own code 12 %, packages 25 %, …` for one profiled process. */
function categoryText(summary: ProfileSummary): string {
  if (!hasEnoughSamples(summary)) return `${summary.samples} samples, too few to tell`;
  return CATEGORIES.map((category) => `${CATEGORY_TITLES[category]} ${percent(summary.categories[category])}`).join(', ');
}

function sharesText(shares: readonly TimeShare[]): string {
  return shares.length > 0 ? shares.map((share) => `${share.name} ${percent(share.share)}`).join(', ') : '–';
}

/** With `--profile`: a section on where each serving process spent its time. */
function profileSection(profiles: readonly ProfileSummary[], problems: readonly string[]): string[] {
  const columns = CATEGORIES.map((category) => CATEGORY_TITLES[category]);
  const told = profiles.filter(hasEnoughSamples);
  return [
    '## Where the time goes',
    '',
    "Every process ran under V8's sampling profiler (`pnpm bench --profile`: `node --cpu-prof`, a sample every 10 ms). Each row is one",
    "serving process in one workload: the samples taken in the workload's measured windows (all runs), and the share of their time",
    "spent in each kind of code (self time: a function's own work, not what it calls):",
    '',
    "- **own code**: the process's own JavaScript (Gatehouse's bundle; the script of the baseline or a floor);",
    '- **packages**: third-party packages (Koa, @koa/router, http-proxy, prom-client, bcryptjs…);',
    "- **Node.js**: node's own JavaScript (HTTP, streams, events, timers);",
    "- **native**: code without a script: V8's builtins and Node's C++ bindings called from JavaScript (the socket writes are here);",
    '- **GC**: the garbage collector; **(program)**: work outside any JavaScript function.',
    '',
    'Samples measure time by the clock, not CPU: a thread waiting for a core counts too, and a process with threads (auth) adds',
    "theirs up; idle time (the event loop's, and auth's password threads waiting for a task) is left out. Profiling costs CPU, so the",
    `throughput of a profiled run compares only with figures of the same run. Rows with fewer than ${MIN_PROFILE_SAMPLES} samples give no shares.`,
    'The profiles themselves are in `profiles/<process>/`, for Chrome DevTools.',
    '',
    `| workload | process | samples | sampled ms | ${columns.join(' | ')} | top packages |`,
    `|---|---|---:|---:|${columns.map(() => '---:').join('|')}|---|`,
    ...profiles.map((summary) => {
      const enough = hasEnoughSamples(summary);
      const shares = CATEGORIES.map((category) => (enough ? percent(summary.categories[category]) : '–'));
      const packages = enough ? sharesText(summary.packages) : '–';
      return `| ${summary.workload} | ${summary.process} | ${summary.samples} | ${fixed(summary.sampledMs, 0)} | ${shares.join(' | ')} | ${packages} |`;
    }),
    '',
    ...(told.length > 0 ? ['Functions with the most self time:', '', ...told.map((summary) => `- ${summary.workload} at ${summary.process}: ${sharesText(summary.functions)}`), ''] : []),
    ...(problems.length > 0 ? ['Missing:', '', ...problems.map((problem) => `- ${problem}`), ''] : []),
  ];
}

const TABLE_HEADER = ['workload', 'req/s', '× baseline', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'CPU ms/req'];

function tableRows(report: BenchReport): string[][] {
  return report.workloads.map((workload) => [
    workload.name,
    requestsPerSec(workload.requestsPerSec),
    ratio(workload.ratioToBaseline),
    milliseconds(workload.p50Ms),
    milliseconds(workload.p99Ms),
    String(workload.non2xx),
    String(workload.errors),
    cpuPerRequest(workload.cpuMsPerRequest),
  ]);
}

function summaryLines(report: BenchReport): string[] {
  const lines: string[] = [];
  const signin = report.signinVsBcrypt;
  if (signin) {
    lines.push(
      `Sign-in: ${requestsPerSec(signin.signinRequestsPerSec)} req/s = ${fixed(signin.ratio, 2)}× one bcryptjs thread at cost ${signin.bcryptCost} ` +
        `(${requestsPerSec(signin.bcryptComparesPerSec)} compares/s); target ≥ ${signin.target}×: ${signin.met ? 'met' : 'NOT met'}; ` +
        `auth used ${fixed(signin.authCores, 2)} of ${report.machine.cores} cores meanwhile, ` +
        `so per core it used, sign-in ran at ${fixed(signin.ratio / signin.authCores, 2)}× bcrypt.`,
    );
  }
  const content = report.workloads.find((workload) => workload.name === 'content-mod');
  const koa = report.workloads.find((workload) => workload.name === 'koa-mod');
  if (content && koa) {
    lines.push(
      `Content against the Koa floor, GET /api/test/mod: ${fixed(content.ratioToBaseline / koa.ratioToBaseline, 2)}× the bare Koa app's requests/s ` +
        `(${fixed(content.ratioToBaseline, 2)}× and ${fixed(koa.ratioToBaseline, 2)}× the baseline), CPU ${fixed(content.cpuMsPerRequest, 3)} against ${fixed(koa.cpuMsPerRequest, 3)} ms/req; ` +
        `target ≥ ${CONTENT_TARGET_RATIO}× the baseline: ${content.ratioToBaseline >= CONTENT_TARGET_RATIO ? 'met' : 'NOT met'}${koa.ratioToBaseline >= CONTENT_TARGET_RATIO ? '' : ', and not reached by the bare Koa app either'}` +
        `${(report.settings.workers ?? 1) > 1 ? ` (content ran ${report.settings.workers} processes and the Koa app one, so the two do not compare)` : ''}.`,
    );
  }
  const gateway = report.workloads.find((workload) => workload.name === 'gateway-mod');
  const floor = report.workloads.find((workload) => workload.name === 'floor-mod');
  if (gateway && floor) {
    lines.push(
      `Gateway against the proxy floor, GET /api/test/mod: ${fixed(gateway.ratioToBaseline / floor.ratioToBaseline, 2)}× the bare proxy's requests/s, ` +
        `p99 ${milliseconds(gateway.p99Ms)} ms against ${milliseconds(floor.p99Ms)} ms, CPU ${fixed(gateway.cpuMsPerRequest, 3)} against ${fixed(floor.cpuMsPerRequest, 3)} ms/req ` +
        `(both with content's); target p99 < ${GATEWAY_TARGET_P99_MS} ms at ${report.settings.connections} connections: ${gateway.p99Ms < GATEWAY_TARGET_P99_MS ? 'met' : 'NOT met'}${floor.p99Ms < GATEWAY_TARGET_P99_MS ? '' : ', and not met by the bare proxy either'}.`,
    );
  }
  const health = report.authHealth;
  if (health) {
    lines.push(
      `Auth GET /healthz during the sign-in storm: p99 ${milliseconds(health.duringSigninP99Ms)} ms, p50 ${milliseconds(health.duringSigninP50Ms)} ms ` +
        `(p99 ${milliseconds(health.atRestP99Ms)} ms at rest; ${health.non2xx} non-2xx, ${health.errors} errors).`,
    );
  }
  return lines;
}

/** The results table and the sign-in and health lines, aligned for a terminal. */
export function renderText(report: BenchReport): string {
  const rows = [TABLE_HEADER, ...tableRows(report)];
  const widths = TABLE_HEADER.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  const line = (row: string[]) =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0))).join('  ');
  const memory = Object.entries(report.memory)
    .map(([name, figures]) => `${name} ${fixed(figures.peakRssMb, 0)} MiB`)
    .join(', ');
  const profiles = [
    ...(report.profiles ?? []).map((summary) => `Profile of ${summary.workload} at ${summary.process}: ${categoryText(summary)}.`),
    ...(report.profileProblems ?? []).map((problem) => `Profile missing: ${problem}.`),
  ];
  return [line(TABLE_HEADER), ...rows.slice(1).map(line), '', ...summaryLines(report), `Peak RSS: ${memory}.`, ...profiles, ''].join('\n');
}

function describeSettings(report: BenchReport): string {
  const { settings, machine } = report;
  const runs = settings.runs === 1 ? '1 run' : `${settings.runs} runs (medians)`;
  return (
    `${report.date} · ${machine.cores} × ${machine.cpuModel} · Node ${machine.node} · ${report.database.description} · ` +
    `${runs} of ${settings.durationSec} s per workload after ${settings.warmupSec} s of warm-up, ${settings.connections} connections, pipelining 1 · ` +
    `load average ${machine.loadAverageAtStart[0] ?? '?'} at the start, ${report.elapsedSec} s in all` +
    (settings.smoke ? ' · smoke run (figures not meaningful)' : '') +
    (settings.profiled ? ' · profiled (`--profile`): every process ran under the sampling profiler' : '')
  );
}

/** The Markdown report (latest.md). */
export function renderMarkdown(report: BenchReport, svgFile: string): string {
  const header = `| ${TABLE_HEADER.join(' | ')} | what |`;
  const align = `|${TABLE_HEADER.map((_, column) => (column === 0 ? '---' : '---:')).join('|')}|---|`;
  const rows = tableRows(report).map((row, index) => `| ${row.join(' | ')} | ${report.workloads[index]?.title ?? ''} |`);
  const memoryRows = Object.entries(report.memory).map(
    ([name, figures]) => `| ${name} | ${fixed(figures.peakRssMb, 0)} | ${fixed(figures.vmHwmMb, 0)} |`,
  );
  const errorsLogged = Object.entries(report.errorsLogged).filter(([, count]) => count > 0);
  const failures = findFailures(report);
  return [
    '# Gatehouse benchmark',
    '',
    describeSettings(report),
    '',
    'Throughput is also given as a ratio to a bare node:http JSON server measured in the same run: the machine',
    'is shared and noisy, so only the ratios compare across runs. Latencies are of 2xx answers; non-2xx and',
    'errors are totals over all runs; CPU ms/req is the CPU time of the serving processes in the measured window',
    'divided by the answers (10 ms clock ticks, so small per-request figures are approximate).',
    '',
    header,
    align,
    ...rows,
    '',
    `![Requests per second as a ratio to the baseline](${svgFile})`,
    '',
    '## Sign-in and health',
    '',
    ...summaryLines(report).map((line) => `- ${line}`),
    '',
    '## Memory',
    '',
    '| process | peak RSS MiB (sampled) | VmHWM MiB |',
    '|---|---:|---:|',
    ...memoryRows,
    '',
    ...(report.profiles ? profileSection(report.profiles, report.profileProblems ?? []) : []),
    ...(failures.length > 0 ? ['## Problems', '', ...failures.map((failure) => `- ${failure}`), ''] : []),
    ...(errorsLogged.length > 0
      ? ['## Errors logged', '', ...errorsLogged.map(([name, count]) => `- ${name}: ${count} log lines at level error or above`), '']
      : []),
    '## Notes',
    '',
    '- The content workloads send one token over and over: after its first check, the content service answers from its',
    '  cache of verified tokens (`TOKEN_CACHE_SIZE`), so these figures are for a returning token, not an RSA verification.',
    `- The refresh workloads rotate sessions of ${report.settings.refreshUsers} users: a refresh holds its user's row lock for its whole transaction,`,
    '  so sessions of a single user refresh one after another, and the figure would measure that lock.',
    '- CPU figures are of the processes the benchmark started; a PostgreSQL server\'s own CPU is not included.',
    report.settings.runtime === 'built'
      ? `- The services ran built (\`pnpm build\`, \`node dist/<service>/main.js\`) with the Docker image's \`NODE_OPTIONS=${report.settings.nodeOptions ?? ''}\`${report.settings.mallocArenaMax === undefined ? '' : ` and \`MALLOC_ARENA_MAX=${report.settings.mallocArenaMax}\``} and the node options of their docker-compose.yml commands (${nodeFlagsText(report.settings.nodeFlags)}), as the image runs them; the baseline and the proxy floor are plain JavaScript run by node with default options: the baseline's memory is the floor of any Node.js process; the Koa floor runs with content's NODE_OPTIONS${report.settings.mallocArenaMax === undefined ? '' : ' and MALLOC_ARENA_MAX'}.`
      : '- The services ran from TypeScript through tsx (`--source`), as `pnpm start` runs them; the baseline and the two floors are plain JavaScript, so their memory is about 25 MiB below what tsx adds to each service.',
    '- `floor-mod` is the least any reverse proxy in Node.js does: a bare node:http proxy (scripts/bench/proxy-floor.mjs) with keep-alive',
    '  connections in front of the same content service. The gateway does all it does and more, so its figures cannot beat these.',
    '- `koa-mod` is the least any Koa service does for that route: a bare Koa app with @koa/router (scripts/bench/koa-floor.mjs), the',
    "  versions content runs, that only asks for a token header. Content does all it does and more (checks the token and its role, gives",
    '  the request an id, counts it in its metrics, sets security headers), so its figures cannot beat these.',
    `- Settings of the services: \`LOG_LEVEL=warn\`, \`BCRYPT_COST=10\`, \`AUTH_RATE_LIMIT=0\`, \`SIGNIN_MAX_FAILURES=0\`, \`WORKERS=${report.settings.workers ?? 1}\` for the gateway and content; everything else default.`,
    `- Written by \`pnpm bench\` (scripts/bench); all figures, per run, are in latest.json.`,
    '',
  ].join('\n');
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Bar colours by what serves the workload, in the order of the legend. */
const COLOURS = {
  baseline: { fill: '#8c8c8c', label: 'baseline' },
  content: { fill: '#4e79a7', label: 'content directly' },
  gateway: { fill: '#f28e2b', label: 'gateway → content' },
  floor: { fill: '#bab0ac', label: 'bare proxy → content' },
  koa: { fill: '#9bb7d4', label: 'bare Koa app' },
  auth: { fill: '#e15759', label: 'gateway → auth' },
  mixed: { fill: '#59a14f', label: 'mixed' },
} as const;

function colourOf(servedBy: readonly ProcessName[]): keyof typeof COLOURS {
  if (servedBy.includes('baseline')) return 'baseline';
  if (servedBy.includes('floor')) return 'floor';
  if (servedBy.includes('koa')) return 'koa';
  if (servedBy.includes('auth')) return servedBy.includes('content') ? 'mixed' : 'auth';
  return servedBy.includes('gateway') ? 'gateway' : 'content';
}

/** A horizontal bar chart of each workload's ratio to the baseline (latest.svg). */
export function renderSvg(report: BenchReport): string {
  const labelWidth = 150;
  const barArea = 480;
  const valueWidth = 70;
  const rowHeight = 24;
  const top = 56;
  const width = labelWidth + barArea + valueWidth + 20;
  const height = top + report.workloads.length * rowHeight + 62;
  const largest = Math.max(1, ...report.workloads.map((workload) => (Number.isFinite(workload.ratioToBaseline) ? workload.ratioToBaseline : 0)));
  const scaleMax = Math.ceil(largest * 4) / 4; // a multiple of 0.25
  const x = (value: number) => labelWidth + (barArea * value) / scaleMax;
  const ticks = Array.from({ length: Math.round(scaleMax / 0.25) + 1 }, (_, i) => i * 0.25);

  const bars = report.workloads.map((workload, index) => {
    const y = top + index * rowHeight;
    const value = Number.isFinite(workload.ratioToBaseline) ? workload.ratioToBaseline : 0;
    const barWidth = Math.max(1, x(value) - labelWidth);
    return [
      `  <text x="${labelWidth - 8}" y="${y + 16}" text-anchor="end">${escapeXml(workload.name)}</text>`,
      `  <rect x="${labelWidth}" y="${y + 4}" width="${barWidth.toFixed(1)}" height="${rowHeight - 8}" fill="${COLOURS[colourOf(workload.servedBy)].fill}">` +
        `<title>${escapeXml(`${workload.title}: ${requestsPerSec(workload.requestsPerSec)} req/s`)}</title></rect>`,
      `  <text x="${(labelWidth + barWidth + 6).toFixed(1)}" y="${y + 16}">${escapeXml(ratio(workload.ratioToBaseline))}</text>`,
    ].join('\n');
  });
  const axisY = top + report.workloads.length * rowHeight + 4;
  const grid = ticks.map(
    (tick) =>
      `  <line x1="${x(tick).toFixed(1)}" y1="${top}" x2="${x(tick).toFixed(1)}" y2="${axisY}" stroke="${tick === 1 ? '#333' : '#e3e3e3'}"` +
      `${tick === 1 ? ' stroke-dasharray="4 3"' : ''}/>\n` +
      `  <text x="${x(tick).toFixed(1)}" y="${axisY + 16}" text-anchor="middle" fill="#555">${tick}</text>`,
  );
  const subtitle = `${report.date.slice(0, 10)} · ${report.database.kind === 'postgres' ? 'PostgreSQL' : 'embedded PGlite'} · ${report.settings.connections} connections · ${report.settings.runs === 1 ? '1 run' : `median of ${report.settings.runs} runs`}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', sans-serif" font-size="12">`,
    '  <title>Gatehouse: requests per second as a ratio to a bare node:http server</title>',
    `  <rect width="${width}" height="${height}" fill="#fff"/>`,
    `  <text x="10" y="22" font-size="15" font-weight="600">Requests/s as a ratio to a bare node:http server (1 = baseline)</text>`,
    `  <text x="10" y="40" fill="#555">${escapeXml(subtitle)}</text>`,
    ...grid,
    ...bars,
    `  <text x="${labelWidth + barArea / 2}" y="${axisY + 34}" text-anchor="middle" fill="#555">× baseline requests/s</text>`,
    ...Object.values(COLOURS).map(
      (colour, index) =>
        `  <rect x="${10 + index * 140}" y="${axisY + 45}" width="10" height="10" fill="${colour.fill}"/>` +
        `<text x="${24 + index * 140}" y="${axisY + 54}" fill="#555">${escapeXml(colour.label)}</text>`,
    ),
    '</svg>',
    '',
  ].join('\n');
}

/** Writes latest.json, latest.md and latest.svg to `dir`; resolves with their paths. */
export async function writeReport(dir: string, report: BenchReport): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const files = {
    'latest.json': `${JSON.stringify(report, null, 2)}\n`,
    'latest.md': renderMarkdown(report, 'latest.svg'),
    'latest.svg': renderSvg(report),
  };
  const written: string[] = [];
  for (const [name, text] of Object.entries(files)) {
    const file = path.join(dir, name);
    await writeFile(file, text);
    written.push(file);
  }
  return written;
}
