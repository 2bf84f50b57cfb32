import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { KINDS } from '../../scripts/soak/client';
import type { SoakReport } from '../../scripts/soak/report';

const root = path.resolve(__dirname, '../..');

/** Runs `pnpm soak` with `args` as a child process; resolves with its exit code and output. */
function runSoak(args: string[], env: NodeJS.ProcessEnv): { done: Promise<{ code: number | null; output: string }>; interrupt(): void } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'scripts/soak/main.ts'), ...args], {
    cwd: root,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  return {
    done: new Promise((resolve) => child.on('exit', (code) => resolve({ code, output }))),
    // SIGINT lets the soak stop the services it started.
    interrupt: () => child.kill('SIGINT'),
  };
}

describe('pnpm soak --smoke', () => {
  let outDir: string;

  beforeAll(async () => {
    outDir = await mkdtemp(path.join(os.tmpdir(), 'gatehouse-soak-test-'));
  });

  afterAll(async () => {
    await rm(outDir, { recursive: true, force: true });
  });

  it('sends every kind of request to the whole stack and passes every check', async () => {
    // On the test PostgreSQL server when there is one (the soak makes a database of its own
    // there and drops it), else on the embedded database.
    const out = path.join(outDir, 'soak.json');
    const soak = runSoak(['--smoke', '--out', out], { DATABASE_URL: process.env.TEST_DATABASE_URL ?? '' });
    const timer = setTimeout(() => soak.interrupt(), 80_000);
    const { code, output } = await soak.done;
    clearTimeout(timer);

    expect({ code, output }).toEqual({ code: 0, output: expect.stringContaining('Soak passed') });
    const report: SoakReport = JSON.parse(await readFile(out, 'utf8'));
    expect(report.traffic.kinds.map((kind) => kind.kind)).toEqual([...KINDS]);
    for (const kind of report.traffic.kinds) {
      expect({ kind: kind.kind, sent: kind.requests > 0, unexpected: kind.unexpected }).toEqual({ kind: kind.kind, sent: true, unexpected: 0 });
      // The printed summary has a row for the kind with its nonzero count.
      expect(output).toMatch(new RegExp(`^  ${kind.kind} +${kind.requests} `, 'm'));
    }
    expect(report.checks.filter((check) => !check.ok)).toEqual([]);
    expect(report.verification.users).toBeGreaterThan(0);
    for (const memory of Object.values(report.memory)) expect(memory.startMb).toBeGreaterThan(0);
  }, 90_000);
});
