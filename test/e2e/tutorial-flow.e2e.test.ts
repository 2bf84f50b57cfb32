import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildUser, readJson, type UserInput } from '@gatehouse/testing';
import { isClosed, runCli, startStack, type RunningStack } from './stack';

// The whole stack as `pnpm start` runs it — three processes on the embedded database — driven
// through the gateway with the tutorial's flow, stopped with Ctrl-C, and started again.

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-e2e-'));
const env = { DATA_DIR: dataDir, DATABASE_URL: '', LOG_LEVEL: 'warn', BCRYPT_COST: '4' };
const admin = buildUser({ username: 'root_admin' });
const alice = buildUser({ username: 'alice' });
const mia = buildUser({ username: 'mia' });
let stack: RunningStack | undefined;

afterAll(() => {
  stack?.kill();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

function call(method: string, urlPath: string, options: { body?: unknown; headers?: Record<string, string> } = {}) {
  if (!stack) throw new Error('stack not started');
  return fetch(`${stack.gatewayUrl}${urlPath}`, {
    method,
    headers: { 'content-type': 'application/json', ...options.headers },
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
}

async function signIn(user: UserInput) {
  const res = await call('POST', '/api/auth/signin', { body: { username: user.username, password: user.password } });
  return { status: res.status, body: await readJson(res) };
}

async function board(name: string, token?: string, header: 'x-access-token' | 'authorization' = 'x-access-token') {
  const headers: Record<string, string> = {};
  if (token) headers[header] = header === 'authorization' ? `Bearer ${token}` : token;
  const res = await call('GET', `/api/test/${name}`, { headers });
  const text = await res.text();
  return { status: res.status, text };
}

describe('the tutorial flow through the gateway, on the embedded database', () => {
  it('creates the first admin from the CLI before the first start', async () => {
    const result = await runCli(['create-admin', '--username', admin.username, '--email', admin.email], {
      ...env,
      ADMIN_PASSWORD: admin.password,
    });
    expect(result.output).toContain(`Created admin ${admin.username}`);
    expect(result.code).toBe(0);
  });

  it('starts three processes and reports the gateway once all are healthy', async () => {
    stack = await startStack(env);
    expect(stack.output()).toContain('embedded PostgreSQL (PGlite)');
    const welcome = await call('GET', '/');
    expect(await readJson(welcome)).toEqual({ message: 'Welcome to the Node.js JWT Authentication application.' });
  });

  it('signs users up and in with the tutorial fields', async () => {
    for (const user of [alice, mia]) {
      const res = await call('POST', '/api/auth/signup', { body: user });
      expect(res.status).toBe(201);
      expect(await readJson(res)).toEqual({ message: 'User registered successfully!' });
    }
    const duplicate = await call('POST', '/api/auth/signup', { body: buildUser({ username: 'ALICE' }) });
    expect(duplicate.status).toBe(400);
    expect(await readJson(duplicate)).toMatchObject({ message: 'Failed! Username is already in use!' });

    const signedIn = await signIn(alice);
    expect(signedIn.status).toBe(200);
    expect(signedIn.body).toMatchObject({ username: 'alice', email: alice.email, roles: ['ROLE_USER'], tokenType: 'Bearer' });
    expect(typeof signedIn.body.id).toBe('number');
  });

  it('serves the boards by role, with the tutorial statuses and messages', async () => {
    const { body } = await signIn(alice);
    const token: string = body.accessToken;
    expect(await board('all')).toEqual({ status: 200, text: 'Public Content.' });
    expect(await board('user', token)).toEqual({ status: 200, text: 'User Content.' });
    expect(await board('user', token, 'authorization')).toEqual({ status: 200, text: 'User Content.' });

    const noToken = await board('user');
    expect(noToken.status).toBe(403);
    expect(JSON.parse(noToken.text)).toMatchObject({ message: 'No token provided!' });

    const [header, payload, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString());
    const tampered = `${header}.${Buffer.from(JSON.stringify({ ...claims, roles: ['user', 'admin'] })).toString('base64url')}.${signature}`;
    for (const bad of [tampered, 'not-a-token', `${token}x`]) {
      const res = await board('admin', bad);
      expect(res.status).toBe(401);
      expect(JSON.parse(res.text)).toMatchObject({ message: 'Unauthorized!' });
    }

    const mod = await board('mod', token);
    expect(mod.status).toBe(403);
    expect(JSON.parse(mod.text)).toMatchObject({ message: 'Require Moderator Role!' });
    const adminBoard = await board('admin', token);
    expect(adminBoard.status).toBe(403);
    expect(JSON.parse(adminBoard.text)).toMatchObject({ message: 'Require Admin Role!' });
  });

  it('serves the admin board to the admin made by the CLI', async () => {
    const { body } = await signIn(admin);
    expect(body.roles).toEqual(['ROLE_USER', 'ROLE_ADMIN']);
    expect(await board('admin', body.accessToken)).toEqual({ status: 200, text: 'Admin Content.' });
  });

  it('publishes the signing keys through the gateway', async () => {
    const res = await call('GET', '/api/auth/.well-known/jwks.json');
    expect(res.status).toBe(200);
    const jwks = await readJson(res);
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'RSA', alg: 'RS256' });
  });

  it('refuses to open the embedded database from the CLI while the stack runs', async () => {
    const result = await runCli(['set-roles', '--username', mia.username, '--roles', 'user,moderator'], env);
    expect(result.code).not.toBe(0);
    expect(result.output).toContain('is in use by process');
  });

  it('stops all three processes on Ctrl-C with exit code 0', async () => {
    if (!stack) throw new Error('stack not started');
    const { ports } = stack;
    expect(await stack.interrupt()).toBe(0);
    for (const port of Object.values(ports)) expect(await isClosed(port)).toBe(true);
  });

  it('gives a user the moderator role from the CLI', async () => {
    const result = await runCli(['set-roles', '--username', mia.username, '--roles', 'user,moderator'], env);
    expect(result.output).toContain('now has the roles user, moderator');
    expect(result.code).toBe(0);
  });

  it('keeps every user across a restart, and the new role reaches the token', async () => {
    stack = await startStack(env);
    expect((await signIn(alice)).status).toBe(200);
    const { body } = await signIn(mia);
    expect(body.roles).toEqual(['ROLE_USER', 'ROLE_MODERATOR']);
    expect(await board('mod', body.accessToken)).toEqual({ status: 200, text: 'Moderator Content.' });
    expect((await board('admin', body.accessToken)).status).toBe(403);
    expect(await stack.interrupt()).toBe(0);
  });
});
