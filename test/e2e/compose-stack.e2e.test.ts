import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { buildUser, createTestDatabase, freePort, readJson, type TestDatabase } from '@gatehouse/testing';
import { buildServices } from '../../scripts/build';
import { runtimeImageEnv } from '../../scripts/image';
import { runsWithTool } from './stack';

// docker-compose.yml and the Dockerfile, run without Docker: the production build (`pnpm
// build`, into a temporary directory standing in for the image's /app), then every compose
// service as a process with the environment and command compose would give its container —
// the image's ENV, then the service's `environment` with the `${VAR:-default}` defaults —
// where only the addresses change: compose's host names become 127.0.0.1, each instance
// gets a free port, and DATABASE_URL a fresh database on the test PostgreSQL server. Start
// order and readiness follow `depends_on`, and readiness is the service's own compose
// healthcheck command. Two content instances stand behind the name `content`, as with
// `docker compose up --scale content=2`.

const execFileAsync = promisify(execFile);
const root = path.resolve(__dirname, '../..');
const composeFile = path.join(root, 'docker-compose.yml');

type Json = Record<string, unknown>;
const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

interface ComposeService {
  command?: string[];
  environment?: Record<string, string | number | boolean | null>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  ports?: string[];
  container_name?: string;
  restart?: string;
}

function loadCompose(): Record<string, ComposeService> {
  const compose: unknown = parse(readFileSync(composeFile, 'utf8'), { merge: true });
  if (!isObject(compose) || !isObject(compose.services)) throw new Error('docker-compose.yml has no services');
  // The shapes are what docker-compose itself accepts; the first test checks that with it.
  return Object.fromEntries(Object.entries(compose.services).map(([name, service]) => [name, service as ComposeService]));
}

/** Compose's variable substitution (`$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`). */
function interpolate(value: string, env: Record<string, string | undefined>): string {
  return value.replace(
    /\$\$|\$\{([A-Za-z_]\w*)(?:(:?)([-?])([^}]*))?\}|\$([A-Za-z_]\w*)/g,
    (match, braced?: string, colon?: string, op?: string, arg?: string, bare?: string) => {
      if (match === '$$') return '$';
      const name = braced ?? bare ?? '';
      const current = env[name];
      const missing = current === undefined || (colon === ':' && current === '');
      if (!missing) return current;
      if (op === '?') throw new Error(`docker-compose.yml requires ${name}: ${arg}`);
      return op === '-' ? (arg ?? '') : '';
    },
  );
}

/** The environment compose gives a service's container: every value interpolated with `env`. */
function composeEnvironment(service: ComposeService, env: Record<string, string | undefined> = {}): Record<string, string> {
  return Object.fromEntries(
    Object.entries(service.environment ?? {}).map(([key, value]) => [key, interpolate(value === null ? '' : String(value), env)]),
  );
}

/** Services in an order where each comes after everything it depends on. */
function startOrder(services: Record<string, ComposeService>): string[] {
  const order: string[] = [];
  const visit = (name: string, path: string[]) => {
    if (order.includes(name)) return;
    if (path.includes(name)) throw new Error(`depends_on cycle: ${[...path, name].join(' → ')}`);
    for (const dependency of Object.keys(services[name]?.depends_on ?? {})) visit(dependency, [...path, name]);
    order.push(name);
  };
  for (const name of Object.keys(services)) visit(name, []);
  return order;
}

interface Instance {
  service: string;
  port: number;
  env: Record<string, string>;
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** SIGTERM, as `docker compose down` sends; SIGKILL after `graceMs`, as it does after its timeout. */
async function stop(instances: Instance[], graceMs = 10_000): Promise<void> {
  await Promise.all(
    instances.map(async (instance) => {
      if (instance.child.exitCode !== null || instance.child.signalCode !== null) return;
      instance.child.kill('SIGTERM');
      const timer = setTimeout(() => instance.child.kill('SIGKILL'), graceMs);
      await instance.exited;
      clearTimeout(timer);
    }),
  );
}

/** Runs `argv` (compose's `["node", …]`) as the container's process would, with `node` being this Node. */
function run(argv: string[], env: Record<string, string>, cwd: string) {
  const [program, ...args] = argv;
  if (program !== 'node') throw new Error(`expected a node command, got ${argv.join(' ')}`);
  const child = spawn(process.execPath, args, { cwd, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

/** Runs the compose healthcheck of `instance` until it passes; fails when the instance exits first. */
async function waitHealthy(instance: Instance, test: string[], cwd: string, timeoutMs = 60_000): Promise<void> {
  const [form, ...argv] = test;
  if (form !== 'CMD') throw new Error(`healthcheck of ${instance.service}: expected the CMD form, got ${form}`);
  let exitedWith: number | null | undefined;
  void instance.exited.then((code) => (exitedWith = code));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exitedWith !== undefined) throw new Error(`${instance.service} exited with ${exitedWith}:\n${instance.output()}`);
    if ((await run(argv, instance.env, cwd).exited) === 0) return;
    await sleep(500);
  }
  throw new Error(`${instance.service} not healthy after ${timeoutMs} ms:\n${instance.output()}`);
}

/**
 * One port in front of several instances, each new connection to the next one: what a client
 * of `http://content:4002` gets from Docker's DNS, which answers with every replica's address.
 */
async function roundRobin(ports: number[]): Promise<{ port: number; close(): Promise<void> }> {
  let next = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(ports[next++ % ports.length] ?? 0, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    }
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** True when `docker-compose` runs here (Debian's package; .ci/run installs it). */
function haveDockerCompose(): boolean {
  try {
    execFileSync('docker-compose', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('docker-compose.yml', () => {
  const services = loadCompose();
  const itWithDockerCompose = runsWithTool(haveDockerCompose(), 'docker-compose is not installed (apt-get install docker-compose)') ? it : it.skip;

  itWithDockerCompose('is accepted by docker-compose, which gives each service the environment this test derives', async () => {
    // No variables from this machine: an empty env file and only PATH, as on a fresh checkout.
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-compose-config-'));
    try {
      const envFile = path.join(tmp, 'empty.env');
      writeFileSync(envFile, '');
      const { stdout } = await execFileAsync('docker-compose', ['-f', composeFile, '--env-file', envFile, 'config'], {
        env: { PATH: process.env.PATH ?? '' },
      }).catch((err: unknown) => {
        const missing = isObject(err) && err.code === 'ENOENT';
        throw missing ? new Error('docker-compose is not installed: apt-get install docker-compose (.ci/run does)') : err;
      });
      const normalized: unknown = parse(stdout);
      for (const [name, service] of Object.entries(services)) {
        const environment = isObject(normalized) && isObject(normalized.services) ? normalized.services[name] : undefined;
        expect([name, isObject(environment) ? environment.environment : undefined]).toEqual([name, composeEnvironment(service)]);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('builds the image with the pnpm that package.json pins', () => {
    const pinned = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).packageManager;
    const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
    expect(`pnpm@${/^ARG PNPM_VERSION=(\S+)$/m.exec(dockerfile)?.[1]}`).toBe(pinned);
  });

  it('lets content scale: no fixed name, no host port, reached by its service name', () => {
    expect(services.content?.container_name).toBeUndefined();
    expect(services.content?.ports).toBeUndefined();
    // Only the gateway publishes a port, so nothing else collides with a second copy either.
    expect(Object.entries(services).filter(([, service]) => service.ports).map(([name]) => name)).toEqual(['gateway']);
    expect(composeEnvironment(services.gateway ?? {}).CONTENT_URL).toBe('http://content:4002');
  });
});

const describeOnPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

describe('the production build', () => {
  let workdir = '';
  const instances: Instance[] = [];

  beforeAll(async () => {
    // The image's /app: the bundles in dist/, linked to this checkout's packages.
    workdir = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-app-'));
    await buildServices(path.join(workdir, 'dist'));
  }, 60_000);

  afterAll(async () => {
    await stop(instances);
    rmSync(workdir, { recursive: true, force: true });
  });

  async function start(service: string, argv: string[], env: Record<string, string>): Promise<Instance> {
    const instance = { service, port: Number(env.PORT), env, ...run(argv, env, workdir) };
    instances.push(instance);
    return instance;
  }

  // The path `pnpm start` takes by default (compose below uses PostgreSQL): PGlite loads its
  // WASM from its package, which the bundle leaves external.
  it('runs auth on the embedded database, with the bcrypt worker threads', async () => {
    const port = await freePort();
    const env = { PORT: String(port), DATA_DIR: path.join(workdir, 'data'), BCRYPT_THREADS: '1', BCRYPT_COST: '4', LOG_LEVEL: 'warn' };
    const auth = await start('auth', ['node', 'dist/auth/main.js'], env);
    await waitHealthy(auth, ['CMD', 'node', '-e', `fetch('http://127.0.0.1:${port}/readyz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))`], workdir);
    // Sign-up hashes and scores the password in the worker thread, from dist/auth/bcrypt-worker.js.
    const user = buildUser();
    const post = (route: string, body: unknown) =>
      fetch(`http://127.0.0.1:${port}/api/auth/${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post('signup', user)).status).toBe(201);
    const signedIn = await post('signin', { username: user.username, password: user.password });
    expect(signedIn.status).toBe(200);
    expect(auth.output()).toBe(''); // nothing at warn or above
  }, 180_000); // PGlite starts in seconds on a quiet machine, in tens of them on a busy one

  describeOnPostgres('as docker-compose.yml runs it, with content scaled to 2', () => {
    const services = loadCompose();
    const replicas: Record<string, number> = { content: 2 };
    let database: TestDatabase;
    const balancers: { close(): Promise<void> }[] = [];
    /** Where each compose host name points: `auth` → its port, `content` → the round-robin. */
    const hosts: Record<string, number> = {};
    let gatewayUrl = '';

    beforeAll(async () => {
      database = await createTestDatabase();
      const image = runtimeImageEnv();
      for (const name of startOrder(services)) {
        const service = services[name] ?? {};
        if (name === 'postgres') continue; // the test server's fresh database stands in for it
        const composed = composeEnvironment(service);
        const env: Record<string, string> = { ...image, ...composed, HOST: '127.0.0.1' };
        for (const [key, value] of Object.entries(env)) {
          if (key === 'DATABASE_URL') {
            env[key] = database.databaseUrl ?? '';
            continue;
          }
          // http://auth:4001 → http://127.0.0.1:<auth's port>; the port in the URL must be the
          // one the named service listens on.
          env[key] = value.replace(/\/\/([a-z][\w-]*):(\d+)/g, (match, host: string, port: string) => {
            if (!(host in services)) return match;
            const listening = composeEnvironment(services[host] ?? {}).PORT;
            if (port !== listening) throw new Error(`${name}'s ${key} says ${host}:${port}, but ${host} listens on PORT ${listening}`);
            const local = hosts[host];
            if (local === undefined) throw new Error(`${name} refers to ${host}, which depends_on does not start first`);
            return `//127.0.0.1:${local}`;
          });
        }
        const command = service.command ?? [];
        const runsOnce = Object.values(services).some((other) => other.depends_on?.[name]?.condition === 'service_completed_successfully');
        if (runsOnce) {
          const once = run(command, env, workdir);
          const code = await once.exited;
          if (code !== 0) throw new Error(`${name} exited with ${code}:\n${once.output()}`);
          continue;
        }
        // Replicas start together, as compose starts them.
        const ports = await Promise.all(
          Array.from({ length: replicas[name] ?? 1 }, async () => {
            const port = await freePort();
            const instance = await start(name, command, { ...env, PORT: String(port) });
            if (service.healthcheck) await waitHealthy(instance, service.healthcheck.test, workdir);
            return port;
          }),
        );
        if (ports.length > 1) {
          const balancer = await roundRobin(ports);
          balancers.push(balancer);
          hosts[name] = balancer.port;
        } else {
          hosts[name] = ports[0] ?? 0;
        }
      }
      gatewayUrl = `http://127.0.0.1:${hosts.gateway}`;
    }, 180_000);

    afterAll(async () => {
      await stop(instances);
      for (const balancer of balancers) await balancer.close();
      await database?.drop();
    });

    async function post(route: string, body: unknown) {
      const res = await fetch(`${gatewayUrl}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, body: await readJson(res) };
    }

    it('signs up, signs in and reads /api/test/user through the gateway, served by both content instances', async () => {
      const user = buildUser();
      expect(await post('/api/auth/signup', user)).toEqual({ status: 201, body: { message: 'User registered successfully!' } });
      const signedIn = await post('/api/auth/signin', { username: user.username, password: user.password });
      expect(signedIn.status).toBe(200);
      expect(signedIn.body.roles).toEqual(['ROLE_USER']);

      // Concurrent requests open several upstream connections, which the name `content` spreads.
      const reads = await Promise.all(
        Array.from({ length: 12 }, async () => {
          const res = await fetch(`${gatewayUrl}/api/test/user`, { headers: { 'x-access-token': signedIn.body.accessToken } });
          return `${res.status} ${await res.text()}`;
        }),
      );
      expect(new Set(reads)).toEqual(new Set(['200 User Content.']));
      const contents = instances.filter((instance) => instance.service === 'content');
      expect(contents).toHaveLength(2);
      for (const content of contents) expect(content.output()).toMatch(/"path":"\/api\/test\/user","status":200/);
    });

    it('refuses /api/test/user without a token, in the tutorial words', async () => {
      const res = await fetch(`${gatewayUrl}/api/test/user`);
      expect(res.status).toBe(403);
      expect((await readJson(res)).message).toBe('No token provided!');
    });
  });
});
