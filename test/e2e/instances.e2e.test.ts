import { buildUser, createTestDatabase, readJson, type Json, type TestDatabase } from '@gatehouse/testing';
import { startService, type ServiceProcess } from './stack';

// Two auth and two content instances on one PostgreSQL database, behind one gateway that lists
// them all: whatever one instance does, the others see, and losing one instance of each
// service costs clients nothing they could not retry.
const describeOnPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

const AUTH = 'services/auth/src/main.ts';
const CONTENT = 'services/content/src/main.ts';
const GATEWAY = 'gateway/src/main.ts';

describeOnPostgres('two auth and two content instances on one database', () => {
  let database: TestDatabase;
  const services: ServiceProcess[] = [];
  let auth: [ServiceProcess, ServiceProcess];
  let content: [ServiceProcess, ServiceProcess];
  let gateway: ServiceProcess;

  beforeAll(async () => {
    database = await createTestDatabase();
    const env = { DATABASE_URL: database.databaseUrl, BCRYPT_COST: '4', LOG_LEVEL: 'warn' };
    // Started at the same moment, as an orchestrator would: both migrate and make sure of a
    // signing key on the same database.
    auth = await Promise.all([startService(AUTH, env), startService(AUTH, env)]);
    services.push(...auth);
    // Each content instance prefers a different auth and falls over to the other.
    content = await Promise.all([
      startService(CONTENT, { AUTH_URL: `${auth[0].url},${auth[1].url}`, LOG_LEVEL: 'warn' }),
      startService(CONTENT, { AUTH_URL: `${auth[1].url},${auth[0].url}`, LOG_LEVEL: 'warn' }),
    ]);
    services.push(...content);
    gateway = await startService(GATEWAY, {
      AUTH_URL: auth.map((instance) => instance.url).join(','),
      CONTENT_URL: content.map((instance) => instance.url).join(','),
      HEALTH_CHECK_MS: '200',
      AUTH_RATE_LIMIT: '0',
      LOG_LEVEL: 'warn',
    });
    services.push(gateway);
  }, 180_000);

  afterAll(async () => {
    for (const service of services) service.child.kill('SIGKILL');
    await Promise.all(services.map((service) => service.exited));
    await database?.drop();
  });

  async function post(base: string, path: string, body: unknown): Promise<{ status: number; body: Json }> {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await readJson(res) };
  }

  async function signUpAndIn(base: string): Promise<{ username: string; password: string; accessToken: string; refreshToken: string }> {
    const user = buildUser();
    expect((await post(base, '/api/auth/signup', user)).status).toBe(201);
    const signedIn = await post(base, '/api/auth/signin', { username: user.username, password: user.password });
    expect(signedIn.status).toBe(200);
    return { ...user, accessToken: signedIn.body.accessToken, refreshToken: signedIn.body.refreshToken };
  }

  function board(base: string, name: string, accessToken: string): Promise<Response> {
    return fetch(`${base}/api/test/${name}`, { headers: { 'x-access-token': accessToken } });
  }

  it('publish one set of signing keys', async () => {
    const [a, b] = await Promise.all(auth.map((instance) => fetch(`${instance.url}/.well-known/jwks.json`).then(readJson)));
    expect(a.keys.length).toBeGreaterThan(0);
    expect(b).toEqual(a);
  });

  it('verify a token from either auth instance on both content instances', async () => {
    for (const issuer of auth) {
      const { accessToken } = await signUpAndIn(issuer.url);
      for (const verifier of content) {
        const res = await board(verifier.url, 'user', accessToken);
        expect(res.status).toBe(200);
        expect(await res.text()).toBe('User Content.');
      }
    }
  });

  it('detect a refresh token rotated on one auth instance and reused on the other', async () => {
    const session = await signUpAndIn(auth[0].url);
    const rotated = await post(auth[0].url, '/api/auth/refreshtoken', { refreshToken: session.refreshToken });
    expect(rotated.status).toBe(200);
    const reused = await post(auth[1].url, '/api/auth/refreshtoken', { refreshToken: session.refreshToken });
    expect(reused.status).toBe(403);
    expect(reused.body.code).toBe('auth.refresh_token_reused');
    // The reuse ended the whole family, the successor handed out by the first instance included.
    const successor = await post(auth[0].url, '/api/auth/refreshtoken', { refreshToken: rotated.body.refreshToken });
    expect(successor.status).toBe(403);
  });

  it('share the sign-in throttle: failures counted on both instances lock the account on both', async () => {
    const user = buildUser();
    expect((await post(auth[0].url, '/api/auth/signup', user)).status).toBe(201);
    const wrong = { username: user.username, password: 'not-the-password' };
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await post(auth[i % 2]!.url, '/api/auth/signin', wrong)).status);
    expect(statuses).toEqual([401, 401, 401, 401, 401]);
    for (const instance of auth) {
      const locked = await post(instance.url, '/api/auth/signin', { username: user.username, password: user.password });
      expect(locked.status).toBe(429);
      expect(locked.body.code).toBe('auth.too_many_attempts');
    }
  });

  it('keep serving through the gateway when one instance of each service stops', async () => {
    const session = await signUpAndIn(gateway.url);
    auth[0].child.kill('SIGTERM');
    content[0].child.kill('SIGTERM');
    await Promise.all([auth[0].exited, content[0].exited]);

    // Reads without a body are retried on the other instance: not one fails.
    for (let i = 0; i < 6; i++) {
      expect((await board(gateway.url, 'user', session.accessToken)).status).toBe(200);
      const me = await fetch(`${gateway.url}/api/auth/me`, { headers: { 'x-access-token': session.accessToken } });
      expect(me.status).toBe(200);
    }
    // A sign-up is never sent twice; at most the one that met the stopped instance first is a
    // 502, and every user that got a 201 exists.
    const outcomes: { status: number; username: string; password: string }[] = [];
    for (let i = 0; i < 6; i++) {
      const user = buildUser();
      outcomes.push({ status: (await post(gateway.url, '/api/auth/signup', user)).status, ...user });
    }
    const statuses = outcomes.map((outcome) => outcome.status);
    expect(statuses.filter((status) => status === 502).length).toBeLessThanOrEqual(1);
    expect(statuses.filter((status) => status !== 502 && status !== 201)).toEqual([]);
    for (const outcome of outcomes.filter((o) => o.status === 201)) {
      const signedIn = await post(gateway.url, '/api/auth/signin', { username: outcome.username, password: outcome.password });
      expect(signedIn.status).toBe(200);
    }
    const ready = await fetch(`${gateway.url}/readyz`);
    expect(ready.status).toBe(200);
  }, 60_000);
});
