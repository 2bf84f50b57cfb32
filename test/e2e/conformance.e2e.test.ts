import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { CHECKS, createAttackerKey, runChecks, signRs256, type AttackerKey, type CheckResult } from '@gatehouse/conformance';
import { startStack, type RunningStack } from './stack';

// The security conformance command against the whole stack as `pnpm start` runs it: every
// check passes, through the library and through the command line. And against a deliberately
// insecure server, to prove the checks can fail.

const root = path.resolve(__dirname, '../..');
const STACK_AND_CHECKS_TIMEOUT_MS = 240_000;

function runConformanceCli(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'packages/conformance/src/cli.ts'), ...args], {
    cwd: root,
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, output })));
}

const failedGroups = (results: CheckResult[]) => [...new Set(results.filter((r) => r.outcome === 'fail').map((r) => r.group))];

/**
 * Starts the whole stack on a fresh embedded database before the tests of the enclosing
 * describe block, and stops it after them.
 */
function useFreshStack(): () => RunningStack {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-conformance-'));
  let stack: RunningStack | undefined;
  beforeAll(async () => {
    stack = await startStack({ DATA_DIR: dataDir, DATABASE_URL: '', BCRYPT_COST: '4', LOG_LEVEL: 'warn' });
  }, STACK_AND_CHECKS_TIMEOUT_MS);
  afterAll(async () => {
    await stack?.interrupt();
    stack?.kill();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }, 30_000);
  return () => {
    if (!stack) throw new Error('stack not started');
    return stack;
  };
}

describe('the conformance checks against the whole stack', () => {
  const stack = useFreshStack();
  let results: CheckResult[] = [];

  beforeAll(async () => {
    results = await runChecks(stack().gatewayUrl);
  }, STACK_AND_CHECKS_TIMEOUT_MS);

  const defaultChecks = CHECKS.filter((check) => !check.optIn).map((check) => [check.group, check.name] as const);

  it.each(defaultChecks)('[%s] %s passes', (group, name) => {
    const result = results.find((r) => r.group === group && r.name === name);
    // The reason is part of the compared value so that a failure shows it.
    expect({ outcome: result?.outcome, reason: result?.reason }).toEqual({ outcome: 'pass', reason: undefined });
  });

  it('skips the rate-limit check unless asked for', () => {
    expect(results.filter((r) => r.outcome === 'skip').map((r) => r.group)).toEqual(['rate-limit']);
  });

  // Last: it leaves this client blocked at the gateway for a while.
  it('[--include-rate-limit] the gateway rate-limits the auth routes', async () => {
    const [result] = await runChecks(stack().gatewayUrl, { groups: ['rate-limit'], includeRateLimit: true });
    expect({ outcome: result?.outcome, reason: result?.reason }).toEqual({ outcome: 'pass', reason: undefined });
  }, STACK_AND_CHECKS_TIMEOUT_MS);
});

// A stack of its own: one run of the checks makes about 28 failed sign-ins from this address,
// and auth locks an address after 30 within 15 minutes, so a second run against the stack
// above would meet that lock.
describe('pnpm conformance --base <url> against the whole stack', () => {
  const stack = useFreshStack();

  it('prints a line per check and the summary, and exits 0', async () => {
    const { code, output } = await runConformanceCli(['--base', stack().gatewayUrl]);
    const lines = output.trim().split('\n');
    expect(lines.filter((line) => /^(PASS|FAIL|SKIP) /.test(line))).toHaveLength(CHECKS.length);
    expect(lines.filter((line) => line.startsWith('FAIL '))).toEqual([]);
    expect(lines).toContainEqual(expect.stringMatching(/^PASS enumeration .* — ratio \d+\.\d\d /));
    expect(lines.at(-1)).toBe(`${CHECKS.length - 1} passed, 0 failed`);
    expect(code).toBe(0);
  }, STACK_AND_CHECKS_TIMEOUT_MS);
});

/**
 * A deliberately insecure imitation of Gatehouse: it signs real RS256 tokens but accepts any
 * token at all, answers malformed JSON with a 500 and its stack trace, and sends no security
 * headers.
 */
function startInsecureServer(key: AttackerKey): Promise<{ server: http.Server; url: string }> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const send = (status: number, value: unknown) => {
        const text = typeof value === 'string' ? value : JSON.stringify(value);
        res.writeHead(status, { 'content-type': typeof value === 'string' ? 'text/plain' : 'application/json', 'x-powered-by': 'Express' });
        res.end(text);
      };
      const url = req.url ?? '/';
      if (url === '/api/auth/.well-known/jwks.json') return send(200, { keys: [{ ...key.publicJwk, kid: key.kid, alg: 'RS256' }] });
      if (req.method === 'POST' && url.startsWith('/api/auth/')) {
        let input: unknown;
        try {
          input = JSON.parse(body);
        } catch (err) {
          return send(500, err instanceof Error ? (err.stack ?? err.message) : 'error');
        }
        if (url === '/api/auth/signup') return send(201, { message: 'User registered successfully!' });
        const username = typeof input === 'object' && input !== null && 'username' in input ? String(input.username) : 'anyone';
        const now = Math.floor(Date.now() / 1000);
        const claims = { sub: '1', id: 1, username, roles: ['user'], ver: 0, iss: 'gatehouse', aud: 'gatehouse', iat: now, exp: now + 900, jti: 'x' };
        const accessToken = signRs256({ alg: 'RS256', typ: 'JWT', kid: key.kid }, claims, key.privateKey);
        return send(200, { id: 1, username, roles: ['ROLE_USER'], accessToken, tokenType: 'Bearer' });
      }
      if (url === '/api/test/all') return send(200, 'Public Content.');
      if (url.startsWith('/api/test/')) {
        const token = req.headers['x-access-token'] || req.headers.authorization;
        return token ? send(200, 'Content.') : send(403, { message: 'No token provided!' });
      }
      return send(404, { message: 'Not found.' });
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      resolve({ server, url: `http://127.0.0.1:${port}` });
    });
  });
}

describe('the conformance checks against an insecure server', () => {
  let server: http.Server | undefined;
  let results: CheckResult[] = [];

  beforeAll(async () => {
    const insecure = await startInsecureServer(await createAttackerKey());
    server = insecure.server;
    results = await runChecks(insecure.url);
  }, STACK_AND_CHECKS_TIMEOUT_MS);

  afterAll(() => {
    server?.closeAllConnections();
    server?.close();
  });

  it('reports failures in the tokens, bad-input and headers groups', () => {
    const groups = failedGroups(results);
    for (const group of ['tokens', 'bad-input', 'headers'] as const) expect(groups).toContain(group);
  });

  it('says why: the unsigned token was accepted, malformed JSON got a 500, a header is missing', () => {
    const reasonOf = (name: string) => results.find((r) => r.name === name)?.reason;
    expect(reasonOf('alg none (unsigned) is refused')).toMatch(/^forged token via .+: accepted: 200/);
    expect(reasonOf('malformed JSON gets 400')).toMatch(/^server error: 500/);
    expect(reasonOf('a 200 carries the security headers')).toContain('X-Frame-Options: expected DENY, got none');
  });
});

describe('pnpm conformance usage', () => {
  it('exits 2 without --base, or with an unknown option or group', async () => {
    for (const args of [[], ['--base', 'http://127.0.0.1:1', '--bogus'], ['--base', 'ftp://x'], ['--base', 'http://x', '--group', 'nope']]) {
      const { code, output } = await runConformanceCli(args);
      expect({ args, code }).toEqual({ args, code: 2 });
      expect(output).toContain('Usage: pnpm conformance --base <url>');
    }
  });

  it('prints the help with --help and exits 0', async () => {
    const { code, output } = await runConformanceCli(['--help']);
    expect(output).toContain('--include-rate-limit');
    expect(code).toBe(0);
  });
});
