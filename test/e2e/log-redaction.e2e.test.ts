import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildUser, readJson, type Json } from '@gatehouse/testing';
import { startStack, type RunningStack } from './stack';

// The whole stack as `pnpm start` runs it, logging at trace level, driven through the gateway
// with every request that carries a password or a token — successful, refused, malformed — and
// then the three services' logs searched for any of them.

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-e2e-logs-'));
let stack: RunningStack | undefined;

/** How long a request's log line may take to reach the launcher's output on a busy machine. */
const DEADLINE_MS = 10_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const marker = (label: string) => `${label}-${randomBytes(8).toString('hex')}-Zq`;

beforeAll(async () => {
  // DATABASE_URL empty: the embedded database under DATA_DIR, whatever the test run's env holds.
  stack = await startStack({ DATA_DIR: dataDir, DATABASE_URL: '', BCRYPT_COST: '4', LOG_LEVEL: 'trace' });
}, 120_000);

afterAll(async () => {
  if (stack) await stack.interrupt();
  stack?.kill();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function running(): RunningStack {
  if (!stack) throw new Error('stack not started');
  return stack;
}

/** A request through the gateway with a raw body (JSON unless told otherwise); the JSON answer. */
async function send(
  method: string,
  urlPath: string,
  options: { body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${running().gatewayUrl}${urlPath}`, {
    method,
    headers: { 'content-type': 'application/json', ...options.headers },
    body: options.body,
  });
  return { status: res.status, body: await readJson(res) };
}

const post = (urlPath: string, body: unknown, headers?: Record<string, string>) =>
  send('POST', urlPath, { body: JSON.stringify(body), headers });

/** The user board (text, not JSON) with the token in `headers`. */
async function userBoard(headers: Record<string, string>): Promise<{ status: number; text: string }> {
  const res = await fetch(`${running().gatewayUrl}/api/test/user`, { headers });
  return { status: res.status, text: await res.text() };
}

/** The log lines of `service` (its launcher prefix) that mention `text`. */
function linesOf(service: 'gateway' | 'auth' | 'content', text: string): string[] {
  return running()
    .output()
    .split('\n')
    .filter((line) => line.startsWith(`${service.padEnd(8)}|`) && line.includes(text));
}

/** Waits until `done()` holds or the deadline passes (then the assertions after it report what is missing). */
async function waitFor(done: () => boolean): Promise<void> {
  const deadline = Date.now() + DEADLINE_MS;
  while (!done() && Date.now() < deadline) await sleep(100);
}

describe('logs at trace level never contain passwords or tokens', () => {
  const user = buildUser({ password: marker('SignupSecret') });
  const wrongPassword = marker('WrongSecret');
  const malformedPassword = marker('MalformedSecret');
  const unsupportedPassword = marker('PlainTextSecret');
  /** Every password and token the requests below carried or received. */
  const secrets: { label: string; value: string }[] = [
    { label: 'sign-up password', value: user.password },
    { label: 'wrong password', value: wrongPassword },
    { label: 'password in a malformed JSON body', value: malformedPassword },
    { label: 'password in a text/plain body', value: unsupportedPassword },
  ];
  /** A JWT: the whole token, and its claims and signature parts, each of which alone is a leak. */
  const addJwt = (label: string, token: string) => {
    const [, claims = '', signature = ''] = token.split('.');
    secrets.push({ label, value: token }, { label: `${label} (claims part)`, value: claims }, { label: `${label} (signature part)`, value: signature });
  };
  const addRefreshToken = (label: string, token: string) => secrets.push({ label, value: token });

  it('goes through sign-up, sign-in, both token headers, refresh, failed and malformed sign-ins, a 415 and sign-out', async () => {
    expect(await post('/api/auth/signup', user)).toMatchObject({ status: 201 });

    const signedIn = await post('/api/auth/signin', { username: user.username, password: user.password });
    expect(signedIn.status).toBe(200);
    const { accessToken, refreshToken } = signedIn.body;
    expect(accessToken.split('.')).toHaveLength(3);
    addJwt('access token', accessToken);
    addRefreshToken('refresh token', refreshToken);

    const board = { status: 200, text: 'User Content.' };
    expect(await userBoard({ 'x-access-token': accessToken })).toEqual(board);
    expect(await userBoard({ authorization: `Bearer ${accessToken}` })).toEqual(board);

    const refreshed = await post('/api/auth/refreshtoken', { refreshToken });
    expect(refreshed.status).toBe(200);
    addJwt('refreshed access token', refreshed.body.accessToken);
    addRefreshToken('refreshed refresh token', refreshed.body.refreshToken);

    expect(await post('/api/auth/signin', { username: user.username, password: wrongPassword })).toMatchObject({
      status: 401,
      body: { code: 'auth.invalid_credentials' },
    });

    const malformed = `{"username":"${user.username}","password":"${malformedPassword}",`;
    expect(await send('POST', '/api/auth/signin', { body: malformed })).toMatchObject({
      status: 400,
      body: { code: 'request.invalid_json' },
    });

    const plainText = `username=${user.username}&password=${unsupportedPassword}`;
    expect(await send('POST', '/api/auth/signin', { body: plainText, headers: { 'content-type': 'text/plain' } })).toMatchObject({
      status: 415,
      body: { code: 'request.unsupported_media_type' },
    });

    expect(await post('/api/auth/signout', { refreshToken: refreshed.body.refreshToken })).toEqual({
      status: 200,
      body: { message: "You've been signed out!" },
    });
  });

  it('logged a request line for each of those requests, at trace level, from the services that served them', async () => {
    const signedOut = 'path=/api/auth/signout status=200';
    await waitFor(() => linesOf('gateway', signedOut).length > 0 && linesOf('auth', signedOut).length > 0);

    const requestLines = (service: 'gateway' | 'auth' | 'content', pathAndStatus: string) =>
      linesOf(service, pathAndStatus).filter((line) => line.includes(' request '));
    expect({
      signUp: requestLines('gateway', 'path=/api/auth/signup status=201').length,
      signIn: requestLines('auth', 'path=/api/auth/signin status=200').length,
      boardsAtGateway: requestLines('gateway', 'path=/api/test/user status=200').length,
      boardsAtContent: requestLines('content', 'path=/api/test/user status=200').length,
      refresh: requestLines('auth', 'path=/api/auth/refreshtoken status=200').length,
      wrongPassword: requestLines('auth', 'path=/api/auth/signin status=401').length,
      malformed: requestLines('gateway', 'path=/api/auth/signin status=400').length,
      unsupported: requestLines('auth', 'path=/api/auth/signin status=415').length,
      signOut: requestLines('auth', signedOut).length,
    }).toEqual({
      signUp: 1,
      signIn: 1,
      boardsAtGateway: 2,
      boardsAtContent: 2,
      refresh: 1,
      wrongPassword: 1,
      malformed: 1,
      unsupported: 1,
      signOut: 1,
    });
    // The refusals are logged at debug level: lines below info were captured too.
    const rejected = linesOf('auth', ' DEBUG request rejected ');
    for (const code of ['auth.invalid_credentials', 'request.invalid_json', 'request.unsupported_media_type']) {
      expect(rejected.filter((line) => line.includes(`code=${code} `))).toHaveLength(1);
    }
  });

  it('contains none of the passwords, tokens or JWT parts anywhere in the output of the three services', () => {
    // 4 passwords, 2 JWTs in 3 forms each, 2 refresh tokens; none empty.
    expect(secrets).toHaveLength(12);
    expect(secrets.filter((secret) => secret.value.length < 16)).toEqual([]);
    const output = running().output();
    expect(secrets.filter((secret) => output.includes(secret.value)).map((secret) => secret.label)).toEqual([]);
  });
});
