import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { freePort } from '@gatehouse/testing';

const root = path.resolve(__dirname, '../..');

function runTs(entry: string, args: string[], env: NodeJS.ProcessEnv, detached = false): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', path.join(root, entry), ...args], {
    cwd: root,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
}

/** Runs the auth CLI (`pnpm cli …`) as a child process. */
export function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  const child = runTs('services/auth/src/cli.ts', args, env);
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, output })));
}

export interface RunningStack {
  gatewayUrl: string;
  ports: { gateway: number; auth: number; content: number };
  /** Everything the launcher printed so far. */
  output(): string;
  /** Ctrl-C: SIGINT to the launcher; resolves with its exit code. */
  interrupt(): Promise<number | null>;
  /** Last resort for afterAll: kills the launcher's whole process group. */
  kill(): void;
}

/** Starts the whole stack the way `pnpm start` does, on free ports, and waits until it is ready. */
export async function startStack(env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<RunningStack> {
  const ports = { gateway: await freePort(), auth: await freePort(), content: await freePort() };
  const child = runTs(
    'scripts/start.ts',
    [],
    {
      GATEWAY_PORT: String(ports.gateway),
      AUTH_PORT: String(ports.auth),
      CONTENT_PORT: String(ports.content),
      ...env,
    },
    true,
  );
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stack not ready in time:\n${output}`)), timeoutMs);
    const check = () => {
      if (output.includes('Gatehouse is ready')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`stack exited with ${code} before it was ready:\n${output}`));
    });
  });

  return {
    gatewayUrl: `http://127.0.0.1:${ports.gateway}`,
    ports,
    output: () => output,
    async interrupt() {
      child.kill('SIGINT');
      return exited;
    },
    kill() {
      if (child.pid && child.exitCode === null) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    },
  };
}

/** True when nothing accepts connections on `port` any more. */
export function isClosed(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

/** One service (`services/auth/src/main.ts`, …) running as a child process on its own port. */
export interface ServiceProcess {
  child: ChildProcess;
  url: string;
  port: number;
  /** Resolves once the process has exited, with its exit code (null when a signal ended it). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything the process wrote so far (stdout and stderr). */
  output(): string;
}

/**
 * Starts one service from its entry file, the way `pnpm start` does, with `PORT` free, and
 * resolves once its `/healthz` answers.
 */
export async function startService(entry: string, env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<ServiceProcess> {
  const port = await freePort();
  const child = runTs(entry, [], { PORT: String(port), ...env });
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  let gone = false;
  void exited.then(() => (gone = true));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const up = await fetch(`${url}/healthz`).then((res) => res.ok, () => false);
    if (up) break;
    if (gone) throw new Error(`${entry} exited before it was healthy:\n${output}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${entry} was not healthy within ${timeoutMs} ms:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { child, url, port, exited, output: () => output };
}

/**
 * Whether to run the tests that need an outside tool (a browser, docker-compose): yes when it
 * is `available`; otherwise no, with a note saying what is `missing`, so that `npm test` on a
 * machine with only Node.js passes. On CI (`CI` set) always yes: CI installs the tools, and a
 * missing one must fail loudly there rather than skip.
 */
export function runsWithTool(available: boolean, missing: string): boolean {
  if (available || process.env.CI) return true;
  process.stderr.write(`skipped: ${missing}\n`);
  return false;
}
