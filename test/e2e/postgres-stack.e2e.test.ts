import { buildUser, createTestDatabase, readJson, type TestDatabase } from '@gatehouse/testing';
import { runCli, startStack, type RunningStack } from './stack';

// The same launcher with DATABASE_URL: the stack uses that PostgreSQL server instead of the
// embedded database, and the CLI can change roles while the stack runs.
const describeOnPostgres = process.env.TEST_DATABASE_URL ? describe : describe.skip;

describeOnPostgres('the stack on PostgreSQL from DATABASE_URL', () => {
  let database: TestDatabase;
  let stack: RunningStack | undefined;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    database = await createTestDatabase();
    env = { DATABASE_URL: database.databaseUrl, LOG_LEVEL: 'warn', BCRYPT_COST: '4' };
    stack = await startStack(env);
  });

  afterAll(async () => {
    if (stack) await stack.interrupt();
    stack?.kill();
    await database?.drop();
  });

  async function post(path: string, body: unknown) {
    const res = await fetch(`${stack?.gatewayUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await readJson(res) };
  }

  it('says which database it uses and serves sign-up and sign-in', async () => {
    expect(stack?.output()).toContain('PostgreSQL from DATABASE_URL');
    const user = buildUser();
    expect((await post('/api/auth/signup', user)).status).toBe(201);
    const signedIn = await post('/api/auth/signin', { username: user.username, password: user.password });
    expect(signedIn.body.roles).toEqual(['ROLE_USER']);
  });

  it('lets an operator promote a user from the CLI while the stack runs', async () => {
    const user = buildUser();
    await post('/api/auth/signup', user);
    const result = await runCli(['set-roles', '--username', user.username, '--roles', 'user,moderator,admin'], env);
    expect(result.code).toBe(0);
    const { body } = await post('/api/auth/signin', { username: user.username, password: user.password });
    expect(body.roles).toEqual(['ROLE_USER', 'ROLE_MODERATOR', 'ROLE_ADMIN']);
    for (const [board, text] of [
      ['mod', 'Moderator Content.'],
      ['admin', 'Admin Content.'],
    ]) {
      const res = await fetch(`${stack?.gatewayUrl}/api/test/${board}`, { headers: { authorization: `Bearer ${body.accessToken}` } });
      expect(await res.text()).toBe(text);
    }
  });

  it('answers racing sign-ups of one name through the gateway with one 201 and 400s, never a 500', async () => {
    const username = buildUser().username;
    const results = await Promise.all(Array.from({ length: 6 }, () => post('/api/auth/signup', buildUser({ username }))));
    const statuses = results.map((result) => result.status).sort();
    expect(statuses).toEqual([201, 400, 400, 400, 400, 400]);
  });
});
