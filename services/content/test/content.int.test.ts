import { createHmac, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import jwt from 'jsonwebtoken';
import { createSilentLogger, startServer, type RunningServer } from '@gatehouse/common';
import {
  MAX_TOKEN_LENGTH,
  createJwksClient,
  createRevocationFeedClient,
  signAccessToken,
  toPublicJwk,
  type JwksClient,
  type PublicJwk,
  type RevocationFeedClient,
  type RoleName,
  type SigningKey,
} from '@gatehouse/tokens';
import { createApp } from '../src/app';
import type { ContentConfig } from '../src/config';

// The real content app on an ephemeral port; a real HTTP server on another one stands in for
// the auth service's JWKS endpoint. Tokens are minted with the auth service's signer.

// The verified-token cache is on, as in production: every expectation below holds with it.
const config: Pick<ContentConfig, 'issuer' | 'audience' | 'clockToleranceSeconds' | 'tokenCacheSize'> = {
  issuer: 'gatehouse',
  audience: 'gatehouse',
  clockToleranceSeconds: 5,
  tokenCacheSize: 1_000,
};
const TTL = 900;
const JWKS_PATH = '/.well-known/jwks.json';
const FEED_PATH = '/internal/revocations';

// ---------------------------------------------------------------------------------------------
// The stand-in for auth's JWKS endpoint.

interface JwksServer {
  url: string;
  /** The revocation feed's URL on the same server. */
  feedUrl: string;
  requests: number;
  keys: PublicJwk[];
  /** What the revocation feed lists. */
  revocations: { sub: string; ver: number }[];
  status: number;
  close(): Promise<void>;
}

async function startJwksServer(keys: PublicJwk[]): Promise<JwksServer> {
  const server = http.createServer((req, res) => {
    if (req.url === FEED_PATH) {
      res.writeHead(state.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(state.status === 200 ? { revocations: state.revocations } : { message: 'unavailable' }));
      return;
    }
    state.requests += 1;
    if (req.url !== JWKS_PATH) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(state.status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(state.status === 200 ? { keys: state.keys } : { message: 'unavailable' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closed = false;
  const state: JwksServer = {
    url: `http://127.0.0.1:${port}${JWKS_PATH}`,
    feedUrl: `http://127.0.0.1:${port}${FEED_PATH}`,
    requests: 0,
    keys,
    revocations: [],
    status: 200,
    async close() {
      if (closed) return;
      closed = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return state;
}

// ---------------------------------------------------------------------------------------------
// One content service wired to one JWKS server.

interface Stack {
  jwks: JwksServer;
  keys: JwksClient;
  revocations: RevocationFeedClient;
  content: RunningServer;
  /** What the JWKS client's `now()` answers; advance it to let a refetch through. */
  jwksClock: { ms: number };
  close(): Promise<void>;
}

async function startStack(options: { publish: PublicJwk[]; clock?: () => Date; warm?: boolean }): Promise<Stack> {
  const logger = createSilentLogger();
  const jwks = await startJwksServer(options.publish);
  const jwksClock = { ms: 1_000_000 };
  const keys = createJwksClient({ url: jwks.url, logger, minRefetchIntervalMs: 10_000, now: () => jwksClock.ms });
  const revocations = createRevocationFeedClient({ url: jwks.feedUrl, logger });
  if (options.warm !== false) await Promise.all([keys.refresh(), revocations.refresh()]);
  const app = createApp({ config, keys, revocations, logger, clock: options.clock });
  const content = await startServer(app, { port: 0 });
  return {
    jwks,
    keys,
    revocations,
    content,
    jwksClock,
    async close() {
      await content.close(1_000);
      await jwks.close();
    },
  };
}

const stacks: Stack[] = [];
async function stack(options: Parameters<typeof startStack>[0]): Promise<Stack> {
  const started = await startStack(options);
  stacks.push(started);
  return started;
}
afterAll(async () => {
  await Promise.all(stacks.splice(0).map((running) => running.close()));
});

// ---------------------------------------------------------------------------------------------
// Keys and tokens.

function rsaKeyPair(): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync('rsa', { modulusLength: 2048 });
}

const current = rsaKeyPair();
const attacker = rsaKeyPair();
const CURRENT_KID = `key-${randomUUID()}`;
const currentKey: SigningKey = { kid: CURRENT_KID, privateKey: current.privateKey };
const currentJwk = toPublicJwk(CURRENT_KID, current.publicKey);

const nowSeconds = (): number => Math.floor(Date.now() / 1000);

function mint(
  roles: RoleName[] = ['user'],
  options: { key?: SigningKey; issuer?: string; audience?: string; now?: number; version?: number } = {},
): string {
  return signAccessToken(
    { id: 7, username: 'alice', roles, tokenVersion: options.version ?? 0 },
    {
      key: options.key ?? currentKey,
      issuer: options.issuer ?? config.issuer,
      audience: options.audience ?? config.audience,
      ttlSeconds: TTL,
      nowSeconds: options.now ?? nowSeconds(),
    },
  ).token;
}

const b64url = (value: unknown): string =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

function validClaims(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const iat = nowSeconds();
  return {
    sub: '7',
    id: 7,
    username: 'alice',
    roles: ['user'],
    ver: 0,
    iss: config.issuer,
    aud: config.audience,
    iat,
    exp: iat + TTL,
    jti: randomUUID(),
    ...overrides,
  };
}

/** A correctly signed token whose payload is padded with an extra claim to more than `length`. */
function signedLongerThan(length: number): string {
  return jwt.sign(validClaims({ pad: 'x'.repeat(Math.ceil((length * 3) / 4)) }), current.privateKey, {
    algorithm: 'RS256',
    keyid: CURRENT_KID,
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP.

interface Reply {
  status: number;
  headers: Headers;
  text: string;
}

async function get(base: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> {
  const response = await fetch(`${base}${path}`, { method, headers });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** Every error is JSON `{message, code, …}` and never leaks a stack, a path or the reason. */
function expectErrorBody(reply: Reply, status: number, expected: { message: string; code: string }): void {
  expect(reply.status).toBe(status);
  expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
  const body = JSON.parse(reply.text) as Record<string, unknown>;
  expect(body).toMatchObject(expected);
  expect(typeof body.message).toBe('string');
  expect(typeof body.code).toBe('string');
  expect(body).not.toHaveProperty('stack');
  expect(reply.text).not.toMatch(/\bat \S+ \(|\.ts:\d+|node_modules|Error:|jwt |invalid signature|expired/i);
}

const UNAUTHORIZED = { message: 'Unauthorized!', code: 'auth.invalid_token' };
const NO_TOKEN = { message: 'No token provided!', code: 'auth.no_token' };

function expectInvalidToken(reply: Reply): void {
  expectErrorBody(reply, 401, UNAUTHORIZED);
  expect(reply.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
}

// ---------------------------------------------------------------------------------------------

describe('content service over HTTP', () => {
  let main: Stack;
  let url: string;

  beforeAll(async () => {
    main = await stack({ publish: [currentJwk] });
    url = main.content.url;
  });

  describe('GET /api/test/all', () => {
    it('[GET /api/test/all] returns 200 Public Content. without a token', async () => {
      const reply = await get(url, '/api/test/all');
      expect(reply.status).toBe(200);
      expect(reply.text).toBe('Public Content.');
    });
  });

  describe('GET /api/test/user', () => {
    it('[GET /api/test/user] returns 403 No token provided! without a token', async () => {
      expectErrorBody(await get(url, '/api/test/user'), 403, NO_TOKEN);
    });

    it('[GET /api/test/user] returns 200 User Content. with a valid token in x-access-token', async () => {
      const reply = await get(url, '/api/test/user', { 'x-access-token': mint() });
      expect(reply.status).toBe(200);
      expect(reply.text).toBe('User Content.');
    });

    it('[GET /api/test/user] returns 200 User Content. with a valid token in Authorization: Bearer', async () => {
      const reply = await get(url, '/api/test/user', { authorization: `Bearer ${mint()}` });
      expect(reply.status).toBe(200);
      expect(reply.text).toBe('User Content.');
    });

    it('[GET /api/test/user] returns 401 for a bad token in Authorization: Bearer too', async () => {
      expectInvalidToken(await get(url, '/api/test/user', { authorization: `Bearer ${mint(['user'], { issuer: 'evil' })}` }));
    });

    it('[GET /api/test/user] accepts a token expired within the clock tolerance', async () => {
      const reply = await get(url, '/api/test/user', { 'x-access-token': mint(['user'], { now: nowSeconds() - TTL - 2 }) });
      expect(reply.status).toBe(200);
    });
  });

  describe('GET /api/test/mod', () => {
    it('[GET /api/test/mod] returns 403 No token provided! without a token', async () => {
      expectErrorBody(await get(url, '/api/test/mod'), 403, NO_TOKEN);
    });

    it('[GET /api/test/mod] returns 403 Require Moderator Role! for a plain user', async () => {
      const reply = await get(url, '/api/test/mod', { 'x-access-token': mint(['user']) });
      expectErrorBody(reply, 403, { message: 'Require Moderator Role!', code: 'auth.missing_role' });
    });

    it('[GET /api/test/mod] returns 200 Moderator Content. for a moderator', async () => {
      const reply = await get(url, '/api/test/mod', { 'x-access-token': mint(['user', 'moderator']) });
      expect(reply.status).toBe(200);
      expect(reply.text).toBe('Moderator Content.');
    });
  });

  describe('GET /api/test/admin', () => {
    it('[GET /api/test/admin] returns 403 No token provided! without a token', async () => {
      expectErrorBody(await get(url, '/api/test/admin'), 403, NO_TOKEN);
    });

    it.each<[string, RoleName[]]>([
      ['a plain user', ['user']],
      ['a moderator', ['user', 'moderator']],
    ])('[GET /api/test/admin] returns 403 Require Admin Role! for %s', async (_label, roles) => {
      const reply = await get(url, '/api/test/admin', { 'x-access-token': mint(roles) });
      expectErrorBody(reply, 403, { message: 'Require Admin Role!', code: 'auth.missing_role' });
    });

    it('[GET /api/test/admin] returns 200 Admin Content. for an admin', async () => {
      const reply = await get(url, '/api/test/admin', { 'x-access-token': mint(['user', 'admin']) });
      expect(reply.status).toBe(200);
      expect(reply.text).toBe('Admin Content.');
    });
  });

  describe('rejects bad tokens with 401 Unauthorized! and never 500', () => {
    const badTokens: [string, () => string][] = [
      ['an expired token', () => mint(['user'], { now: nowSeconds() - 3600 })],
      [
        'a token whose payload was changed to admin without re-signing',
        () => {
          const [header, payload, signature] = mint(['user']).split('.');
          const claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as Record<string, unknown>;
          return `${header}.${b64url({ ...claims, roles: ['user', 'moderator', 'admin'] })}.${signature}`;
        },
      ],
      [
        'a token signed by another key under the same kid',
        () => mint(['user', 'admin'], { key: { kid: CURRENT_KID, privateKey: attacker.privateKey } }),
      ],
      [
        'an unsigned alg none token',
        () => `${b64url({ alg: 'none', typ: 'JWT', kid: CURRENT_KID })}.${b64url(validClaims({ roles: ['admin'] }))}.`,
      ],
      [
        'an HS256 token signed with the PEM of the public key (algorithm confusion)',
        () => {
          const pem = current.publicKey.export({ type: 'spki', format: 'pem' });
          const input = `${b64url({ alg: 'HS256', typ: 'JWT', kid: CURRENT_KID })}.${b64url(validClaims({ roles: ['admin'] }))}`;
          return `${input}.${createHmac('sha256', pem).update(input).digest('base64url')}`;
        },
      ],
      ['a token from another issuer', () => mint(['user'], { issuer: 'someone-else' })],
      ['a token for another audience', () => mint(['user'], { audience: 'another-api' })],
      ['a token with an unknown kid', () => mint(['user'], { key: { kid: 'never-published', privateKey: current.privateKey } })],
      ['a token without a kid', () => jwt.sign(validClaims(), current.privateKey, { algorithm: 'RS256' })],
      [`a correctly signed token longer than ${MAX_TOKEN_LENGTH} characters`, () => signedLongerThan(MAX_TOKEN_LENGTH)],
      ['the string abc', () => 'abc'],
      ['the string a.b.c', () => 'a.b.c'],
      ['the string ...', () => '...'],
    ];

    it.each(badTokens)('[GET /api/test/user] returns 401 auth.invalid_token for %s', async (_label, token) => {
      expectInvalidToken(await get(url, '/api/test/user', { 'x-access-token': token() }));
    });

    it('[GET /api/test/admin] returns 401, not 403, for a bad token', async () => {
      expectInvalidToken(await get(url, '/api/test/admin', { 'x-access-token': mint(['admin'], { issuer: 'evil' }) }));
    });

    it('builds the over-long token with a valid signature, so only its length is refused', () => {
      const token = signedLongerThan(MAX_TOKEN_LENGTH);
      expect(token.length).toBeGreaterThan(MAX_TOKEN_LENGTH);
      expect(() =>
        jwt.verify(token, current.publicKey, { algorithms: ['RS256'], issuer: config.issuer, audience: config.audience }),
      ).not.toThrow();
    });

    // Regression: a `typ: "JWT"` header over a payload that is not JSON made jws.decode throw a
    // SyntaxError, answered 500 without any key or signature. It must be a 401.
    it('[GET /api/test/user] returns 401 for a token whose payload is not JSON', async () => {
      const token = `${b64url({ alg: 'RS256', typ: 'JWT', kid: CURRENT_KID })}.${b64url('not json')}.${b64url('sig')}`;
      expectInvalidToken(await get(url, '/api/test/user', { 'x-access-token': token }));
    });
  });

  describe('errors and health', () => {
    it('[GET /nope] returns 404 JSON request.not_found for an unknown path', async () => {
      expectErrorBody(await get(url, '/nope'), 404, { message: 'Not found.', code: 'request.not_found' });
    });

    it('[POST /api/test/all] returns 405 JSON request.method_not_allowed', async () => {
      const reply = await get(url, '/api/test/all', {}, 'POST');
      expectErrorBody(reply, 405, { message: 'Method not allowed.', code: 'request.method_not_allowed' });
    });

    it('[GET /healthz] returns 200', async () => {
      const reply = await get(url, '/healthz');
      expect(reply.status).toBe(200);
      expect(JSON.parse(reply.text)).toEqual({ status: 'ok' });
    });

    it('[GET /readyz] returns 200 once the signing keys are loaded', async () => {
      const reply = await get(url, '/readyz');
      expect(reply.status).toBe(200);
      expect(JSON.parse(reply.text)).toEqual({ status: 'ready', checks: { signingKeys: 'ok', revocations: 'ok' } });
      expect(main.keys.size).toBe(1);
    });

    it('[GET /api/test/user] judges expiry by the injected clock', async () => {
      const later = await stack({ publish: [currentJwk], clock: () => new Date(Date.now() + 3_600_000) });
      const token = mint();
      expect((await get(url, '/api/test/user', { 'x-access-token': token })).status).toBe(200);
      expectInvalidToken(await get(later.content.url, '/api/test/user', { 'x-access-token': token }));
    });
  });
});

describe('content service and the auth service JWKS', () => {
  it('[GET /readyz] returns 503 until the JWKS can be loaded, then 200', async () => {
    const cold = await stack({ publish: [currentJwk], warm: false });
    cold.jwks.status = 503;
    const unready = await get(cold.content.url, '/readyz');
    expect(unready.status).toBe(503);
    expect(JSON.parse(unready.text)).toEqual({ status: 'unready', checks: { signingKeys: 'failing', revocations: 'failing' } });

    cold.jwks.status = 200;
    const ready = await get(cold.content.url, '/readyz');
    expect(ready.status).toBe(200);
    expect(cold.keys.size).toBe(1);
    expect((await get(cold.content.url, '/healthz')).status).toBe(200);
  });

  it('[GET /api/test/user] fetches the JWKS on the first token when the cache is cold', async () => {
    const cold = await stack({ publish: [currentJwk], warm: false });
    const reply = await get(cold.content.url, '/api/test/user', { 'x-access-token': mint() });
    expect(reply.status).toBe(200);
    expect(cold.jwks.requests).toBe(1);
  });

  it('[GET /api/test/user] verifies from the cache without calling auth per request', async () => {
    const warm = await stack({ publish: [currentJwk] });
    for (let i = 0; i < 3; i++) {
      expect((await get(warm.content.url, '/api/test/user', { 'x-access-token': mint() })).status).toBe(200);
    }
    expect(warm.jwks.requests).toBe(1);
  });

  it('[GET /api/test/user] accepts a token from a newly rotated key once the client refetches', async () => {
    const rotating = await stack({ publish: [currentJwk] });
    const next = rsaKeyPair();
    const nextKid = `key-${randomUUID()}`;
    rotating.jwks.keys = [currentJwk, toPublicJwk(nextKid, next.publicKey)];
    const token = mint(['user'], { key: { kid: nextKid, privateKey: next.privateKey } });

    // Within minRefetchIntervalMs of the warm-up fetch, an unknown kid is not fetched for.
    rotating.jwksClock.ms += 1_000;
    expectInvalidToken(await get(rotating.content.url, '/api/test/user', { 'x-access-token': token }));
    expect(rotating.jwks.requests).toBe(1);

    rotating.jwksClock.ms += 10_000;
    const reply = await get(rotating.content.url, '/api/test/user', { 'x-access-token': token });
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('User Content.');
    expect(rotating.jwks.requests).toBe(2);
    // The old key is still published, so its tokens keep working.
    expect((await get(rotating.content.url, '/api/test/user', { 'x-access-token': mint() })).status).toBe(200);
  });

  it('[GET /api/test/user] keeps verifying with cached keys after the JWKS server is closed', async () => {
    const orphan = await stack({ publish: [currentJwk] });
    await orphan.jwks.close();
    orphan.jwksClock.ms += 60_000;

    const reply = await get(orphan.content.url, '/api/test/mod', { 'x-access-token': mint(['user', 'moderator']) });
    expect(reply.status).toBe(200);
    expect(reply.text).toBe('Moderator Content.');
    // An unknown kid now tries the dead server and still answers 401, not 500.
    const unknown = mint(['user'], { key: { kid: 'not-yet-published', privateKey: current.privateKey } });
    expectInvalidToken(await get(orphan.content.url, '/api/test/user', { 'x-access-token': unknown }));
    expect((await get(orphan.content.url, '/readyz')).status).toBe(200);
  });
});

describe('content service and the revocation feed', () => {
  it('[GET /api/test/user] refuses a token older than its user\'s revocation once the feed lists it', async () => {
    const running = await stack({ publish: [currentJwk] });
    const before = mint(['user', 'moderator'], { version: 0 });
    expect((await get(running.content.url, '/api/test/mod', { 'x-access-token': before })).status).toBe(200);

    running.jwks.revocations = [{ sub: '7', ver: 1 }];
    // Served from the last poll until the next one: no call to auth per request.
    expect((await get(running.content.url, '/api/test/mod', { 'x-access-token': before })).status).toBe(200);
    await running.revocations.refresh();

    expectInvalidToken(await get(running.content.url, '/api/test/mod', { 'x-access-token': before }));
    expectInvalidToken(await get(running.content.url, '/api/test/user', { 'x-access-token': before }));
    // A token issued after the revocation carries the new version and passes.
    const after = mint(['user'], { version: 1 });
    expect((await get(running.content.url, '/api/test/user', { 'x-access-token': after })).status).toBe(200);
  });

  it('[GET /api/test/user] leaves other users\' tokens alone', async () => {
    const running = await stack({ publish: [currentJwk] });
    running.jwks.revocations = [{ sub: '8', ver: 5 }];
    await running.revocations.refresh();
    expect((await get(running.content.url, '/api/test/user', { 'x-access-token': mint() })).status).toBe(200);
  });

  it('keeps applying the last feed while auth is down, and an empty feed lifts nothing it did not list', async () => {
    const running = await stack({ publish: [currentJwk] });
    running.jwks.revocations = [{ sub: '7', ver: 2 }];
    await running.revocations.refresh();
    running.jwks.status = 503;
    await expect(running.revocations.refresh()).rejects.toThrow('revocation feed answered 503');
    expect(running.revocations.size).toBe(1);
    expectInvalidToken(await get(running.content.url, '/api/test/user', { 'x-access-token': mint(['user'], { version: 1 }) }));
    expect((await get(running.content.url, '/api/test/user', { 'x-access-token': mint(['user'], { version: 2 }) })).status).toBe(200);
    expect((await get(running.content.url, '/readyz')).status).toBe(200);
  });

  it('polls by itself once started', async () => {
    const running = await stack({ publish: [currentJwk] });
    const stop = running.revocations.start(50);
    try {
      running.jwks.revocations = [{ sub: '7', ver: 1 }];
      const deadline = Date.now() + 5_000;
      while (running.revocations.size === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expectInvalidToken(await get(running.content.url, '/api/test/user', { 'x-access-token': mint() }));
    } finally {
      stop();
    }
  });

  it('refuses a feed that is not the expected shape and keeps the last good one', async () => {
    const running = await stack({ publish: [currentJwk] });
    running.jwks.revocations = [{ sub: '7', ver: 1 }];
    await running.revocations.refresh();
    running.jwks.revocations = [{ sub: '7', ver: -3 }];
    await expect(running.revocations.refresh()).rejects.toThrow();
    expectInvalidToken(await get(running.content.url, '/api/test/user', { 'x-access-token': mint() }));
  });
});
