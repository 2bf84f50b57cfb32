/**
 * `npm start` (or `pnpm start`): runs auth, content and gateway as three processes with prefixed, readable logs,
 * waits until all three are healthy, prints where the gateway listens, and stops all three on
 * Ctrl-C (SIGINT) or SIGTERM.
 *
 * Without DATABASE_URL the auth service uses the embedded PostgreSQL (PGlite) under DATA_DIR
 * (default `.data/`), so users survive a restart.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';

const root = path.resolve(__dirname, '..');
const env = process.env;
// An empty variable counts as unset, as in the services' own config.
const ports = {
  gateway: Number(env.GATEWAY_PORT || 8080),
  auth: Number(env.AUTH_PORT || 4001),
  content: Number(env.CONTENT_PORT || 4002),
};
for (const [name, port] of Object.entries(ports)) {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    process.stderr.write(`${name.toUpperCase()}_PORT must be a port number from 1 to 65535\n`);
    process.exit(1);
  }
}
const authUrl = `http://127.0.0.1:${ports.auth}`;
const contentUrl = `http://127.0.0.1:${ports.content}`;
const gatewayUrl = `http://localhost:${ports.gateway}`;
const dataDir = path.resolve(root, env.DATA_DIR || '.data');

type ServiceName = keyof typeof ports;
const SERVICES: Record<ServiceName, { entry: string; env: NodeJS.ProcessEnv; color: number }> = {
  auth: { entry: 'services/auth/src/main.ts', env: { PORT: String(ports.auth), DATA_DIR: dataDir }, color: 36 },
  content: { entry: 'services/content/src/main.ts', env: { PORT: String(ports.content), AUTH_URL: authUrl }, color: 35 },
  gateway: {
    entry: 'gateway/src/main.ts',
    env: { PORT: String(ports.gateway), AUTH_URL: authUrl, CONTENT_URL: contentUrl },
    color: 33,
  },
};

const useColor = process.stdout.isTTY && !env.NO_COLOR;
const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
const HIDDEN = new Set(['level', 'time', 'service', 'msg', 'pid', 'hostname']);

/** One pino JSON line as `12:00:01 INFO  message key=value …`; other lines unchanged. */
function formatLine(line: string): string {
  if (!line.startsWith('{')) return line;
  try {
    const entry: Record<string, unknown> = JSON.parse(line);
    const time = typeof entry.time === 'string' ? entry.time.slice(11, 19) : '';
    const level = LEVELS[Number(entry.level)] ?? 'INFO ';
    const extras = Object.entries(entry)
      .filter(([key]) => !HIDDEN.has(key))
      .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
      .join(' ');
    return `${time} ${level} ${String(entry.msg ?? '')}${extras ? ` ${extras}` : ''}`;
  } catch {
    return line;
  }
}

function print(name: string, color: number, line: string): void {
  const label = name.padEnd(8);
  process.stdout.write(`${useColor ? `\x1b[${color}m${label}|\x1b[0m` : `${label}|`} ${line}\n`);
}

const children = new Map<ServiceName, ChildProcess>();
let stopping = false;

function launch(name: ServiceName): ChildProcess {
  const service = SERVICES[name];
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, service.entry)], {
    cwd: root,
    env: { ...env, ...service.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const stream of [child.stdout, child.stderr]) {
    if (stream) readline.createInterface({ input: stream }).on('line', (line) => print(name, service.color, formatLine(line)));
  }
  child.on('exit', (code, signal) => {
    children.delete(name);
    if (stopping) return;
    print(name, service.color, `exited unexpectedly (${signal ?? `code ${code}`}); stopping the stack`);
    void stop(1);
  });
  children.set(name, child);
  return child;
}

async function waitHealthy(name: ServiceName, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const url = `http://127.0.0.1:${ports[name]}/healthz`;
  while (Date.now() < deadline) {
    if (stopping) throw new Error('stopped');
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${name} did not become healthy at ${url} within ${timeoutMs / 1000}s`);
}

async function stop(exitCode: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  const exits = [...children.values()].map(
    (child) =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
      }),
  );
  await Promise.all(exits);
  process.stdout.write(exitCode === 0 ? 'Gatehouse stopped.\n' : '');
  process.exit(exitCode);
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  const database = env.DATABASE_URL ? 'PostgreSQL from DATABASE_URL' : `embedded PostgreSQL (PGlite) in ${path.join(dataDir, 'pglite')}`;
  process.stdout.write(`Starting Gatehouse on ${database}…\n`);
  // Auth first: it migrates the database and creates the signing key that content fetches.
  launch('auth');
  await waitHealthy('auth');
  launch('content');
  launch('gateway');
  await Promise.all([waitHealthy('content'), waitHealthy('gateway')]);
  process.stdout.write(
    `\nGatehouse is ready: gateway at ${gatewayUrl} (auth ${authUrl}, content ${contentUrl}). Press Ctrl-C to stop.\n\n`,
  );
}

main().catch((err: unknown) => {
  if (stopping) return;
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  void stop(1);
});
