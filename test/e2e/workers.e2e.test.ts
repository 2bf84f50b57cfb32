import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { freePort } from '@gatehouse/testing';

// WORKERS runs a stateless service as several processes sharing its port (node:cluster).
const root = path.resolve(__dirname, '../..');

interface Service {
  child: ChildProcess;
  url: string;
  exited: Promise<number | null>;
  output: () => string;
}

async function startService(entry: string, env: NodeJS.ProcessEnv): Promise<Service> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, entry)], {
    cwd: root,
    env: { ...process.env, PORT: String(port), LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const up = await fetch(`${url}/healthz`).then((res) => res.ok, () => false);
    if (up) break;
    if (Date.now() > deadline) throw new Error(`${entry} did not start:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { child, url, exited, output: () => output };
}

/** Pids of the direct children of `pid`. */
function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const running: Service[] = [];
afterAll(() => {
  for (const service of running) service.child.kill('SIGKILL');
});

describe.each([
  ['content', 'services/content/src/main.ts', { AUTH_URL: 'http://127.0.0.1:9' }],
  ['gateway', 'gateway/src/main.ts', { AUTH_URL: 'http://127.0.0.1:9', CONTENT_URL: 'http://127.0.0.1:9' }],
])('%s with WORKERS=2', (_name, entry, env) => {
  it('serves from two worker processes on one port, and stops them all on SIGTERM with exit code 0', async () => {
    const service = await startService(entry, { ...env, WORKERS: '2' });
    running.push(service);
    const pid = service.child.pid ?? 0;
    // Both workers listen: wait until the primary has two children and requests keep working.
    const deadline = Date.now() + 30_000;
    while (childrenOf(pid).length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    const workers = childrenOf(pid);
    expect(workers).toHaveLength(2);
    const answers = await Promise.all(Array.from({ length: 20 }, () => fetch(`${service.url}/healthz`).then((res) => res.status)));
    expect(answers.every((status) => status === 200)).toBe(true);

    service.child.kill('SIGTERM');
    expect(await service.exited).toBe(0);
    for (const worker of workers) expect(() => process.kill(worker, 0)).toThrow();
  });
});
