import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BenchReport } from '../../scripts/bench/report';
import { WORKLOAD_NAMES } from '../../scripts/bench/workloads';
import { composeNodeFlags, runtimeImageEnv } from '../../scripts/image';

const root = path.resolve(__dirname, '../..');

/** Runs `pnpm bench` with `args` as a child process; resolves with its exit code and output. */
function runBench(args: string[], env: NodeJS.ProcessEnv): { done: Promise<{ code: number | null; output: string }>; interrupt(): void } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'scripts/bench/main.ts'), ...args], {
    cwd: root,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  return {
    done: new Promise((resolve) => child.on('exit', (code) => resolve({ code, output }))),
    // SIGINT lets the benchmark stop the services it started.
    interrupt: () => child.kill('SIGINT'),
  };
}

describe('pnpm bench --smoke', () => {
  let outDir: string;

  beforeAll(async () => {
    outDir = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-bench-test-'));
  });

  afterAll(async () => {
    await rm(outDir, { recursive: true, force: true });
  });

  it('runs every workload against the whole stack, profiled, and writes the JSON, Markdown and SVG reports', async () => {
    // On the test PostgreSQL server when there is one (the benchmark makes a database of its
    // own there and drops it), else on the embedded database.
    const bench = runBench(['--smoke', '--profile', '--out', outDir], { DATABASE_URL: process.env.TEST_DATABASE_URL ?? '' });
    const timer = setTimeout(() => bench.interrupt(), 170_000);
    const { code, output } = await bench.done;
    clearTimeout(timer);

    expect({ code, output }).toEqual({ code: 0, output: expect.stringContaining('Wrote') });
    const report: BenchReport = JSON.parse(await readFile(path.join(outDir, 'latest.json'), 'utf8'));
    expect(report.workloads.map((workload) => workload.name)).toEqual([...WORKLOAD_NAMES]);
    for (const workload of report.workloads) {
      expect({ name: workload.name, answered: workload.requests > 0, rated: workload.ratioToBaseline > 0 }).toEqual({
        name: workload.name,
        answered: true,
        rated: true,
      });
    }
    // The services ran as the image and docker-compose.yml run them.
    expect(report.settings).toMatchObject({
      runtime: 'built',
      nodeOptions: runtimeImageEnv().NODE_OPTIONS,
      mallocArenaMax: runtimeImageEnv().MALLOC_ARENA_MAX,
      nodeFlags: { auth: composeNodeFlags('auth'), content: composeNodeFlags('content'), gateway: composeNodeFlags('gateway') },
      workers: 1,
    });
    expect(report.settings.nodeFlags?.auth).toContain('--max-old-space-size=192');
    expect(report.settings.mallocArenaMax).toBeDefined();
    expect(report.signinVsBcrypt?.ratio).toBeGreaterThan(0);
    expect(report.authHealth?.requests).toBeGreaterThan(0);
    // Both floors were measured: the bare proxy in front of content, and the bare Koa app.
    expect(report.memory.floor?.peakRssMb).toBeGreaterThan(0);
    expect(report.memory.koa?.peakRssMb).toBeGreaterThan(0);
    // Each serving process's profile over each workload's window: the content service's own
    // code is in the one of content-mod, and the gateway and content are both profiled for gateway-mod.
    expect(report.settings.profiled).toBe(true);
    const profiles = report.profiles ?? [];
    const contentMod = profiles.find((profile) => profile.workload === 'content-mod' && profile.process === 'content');
    expect(contentMod?.samples).toBeGreaterThan(0);
    expect(contentMod?.categories.own).toBeGreaterThan(0);
    expect(report.profileProblems).toEqual([]);
    expect(profiles.filter((profile) => profile.workload === 'gateway-mod').map((profile) => profile.process)).toEqual(['gateway', 'content']);
    const markdown = await readFile(path.join(outDir, 'latest.md'), 'utf8');
    expect(markdown).toContain('## Where the time goes');
    expect(markdown).toContain('Content against the Koa floor, GET /api/test/mod:');
    expect(markdown).toContain('Gateway against the proxy floor, GET /api/test/mod:');
    expect(await readFile(path.join(outDir, 'latest.svg'), 'utf8')).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  }, 180_000);
});
