import { createHmac, createSign, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { Middleware } from 'koa';
import { AppError, ForbiddenError, UnauthorizedError } from '@gatehouse/common';
import { MAX_TOKEN_LENGTH, type AccessTokenClaims, type RoleName } from './claims';
import { readToken, requireAuth, requireRole } from './guard';
import type { KeyResolver } from './jwks';
import { signAccessToken, type SigningKey } from './sign';
import { createTokenVerifier, type VerifyOptions } from './verify';

// Real RS256 keys, real jsonwebtoken; the only stand-in is an in-memory KeyResolver.
const ISSUER = 'gatehouse-test';
const AUDIENCE = 'gatehouse-content';
const TTL = 900;
const TOLERANCE = 5;
/** 2023-11-14: far from the system clock, so every test shows the injected clock is the one used. */
const NOW = 1_700_000_000;

function rsaKeyPair(): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync('rsa', { modulusLength: 2048 });
}

const primary = rsaKeyPair();
const attacker = rsaKeyPair();
const PRIMARY_KID = 'primary-2023';
const LONGEST_KID = 'k'.repeat(128);
/** Several kids of different lengths for one key, so a token of an exact length can be built. */
const PADDING_KIDS = ['pad-a', 'pad-ab', 'pad-abc', 'pad-abcd'];
const signingKey: SigningKey = { kid: PRIMARY_KID, privateKey: primary.privateKey };

function memoryKeys(): { resolver: KeyResolver; lookups: string[] } {
  const keys = new Map<string, KeyObject>([
    [PRIMARY_KID, primary.publicKey],
    [LONGEST_KID, primary.publicKey],
    ...PADDING_KIDS.map((kid): [string, KeyObject] => [kid, primary.publicKey]),
  ]);
  const lookups: string[] = [];
  return {
    lookups,
    resolver: {
      async getKey(kid) {
        lookups.push(kid);
        return keys.get(kid);
      },
      knownKey: (kid) => keys.get(kid),
    },
  };
}

function setup(options: { nowSeconds?: number; isRevoked?: VerifyOptions['isRevoked'] } = {}) {
  const { resolver, lookups } = memoryKeys();
  const verify = createTokenVerifier({
    keys: resolver,
    issuer: ISSUER,
    audience: AUDIENCE,
    clockToleranceSeconds: TOLERANCE,
    nowSeconds: () => options.nowSeconds ?? NOW,
    isRevoked: options.isRevoked,
  });
  return { verify, lookups };
}

function mint(
  user: { id?: number; username?: string; roles?: RoleName[] } = {},
  options: { nowSeconds?: number; issuer?: string; audience?: string; key?: SigningKey } = {},
): string {
  return signAccessToken(
    { id: user.id ?? 7, username: user.username ?? 'alice', roles: user.roles ?? ['user'], tokenVersion: 0 },
    {
      key: options.key ?? signingKey,
      issuer: options.issuer ?? ISSUER,
      audience: options.audience ?? AUDIENCE,
      ttlSeconds: TTL,
      nowSeconds: options.nowSeconds ?? NOW,
    },
  ).token;
}

/** A complete, valid claim set; `overrides` replace claims, `omit` drops them. */
function claims(overrides: Record<string, unknown> = {}, omit: string[] = []): Record<string, unknown> {
  const all: Record<string, unknown> = {
    sub: '7',
    id: 7,
    username: 'alice',
    roles: ['user'],
    ver: 0,
    iss: ISSUER,
    aud: AUDIENCE,
    iat: NOW,
    exp: NOW + TTL,
    jti: randomUUID(),
    ...overrides,
  };
  for (const name of omit) delete all[name];
  return all;
}

function signRaw(
  payload: string | object,
  privateKey: KeyObject,
  options: { kid?: string; algorithm?: jwt.Algorithm } = {},
): string {
  const algorithm = options.algorithm ?? 'RS256';
  return jwt.sign(payload, privateKey, {
    algorithm,
    header: options.kid === undefined ? { alg: algorithm } : { alg: algorithm, kid: options.kid },
  });
}

const b64url = (value: unknown): string =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/** Builds a token by hand with a genuine RS256 signature over whatever header and payload. */
function handSignedRs256(header: unknown, payload: unknown, privateKey = primary.privateKey): string {
  const input = `${b64url(header)}.${b64url(payload)}`;
  const signature = createSign('RSA-SHA256').update(input).sign(privateKey).toString('base64url');
  return `${input}.${signature}`;
}

/** A validly signed token of exactly `length` characters (padded with an extra claim). */
function signPadded(length: number): string {
  for (const kid of PADDING_KIDS) {
    const [header = '', payload = '', signature = ''] = signRaw(claims({ pad: '' }), primary.privateKey, { kid }).split('.');
    const payloadBytes = Buffer.from(payload, 'base64url').length;
    const fixed = header.length + signature.length + 2;
    // A payload of n bytes is ceil(4n/3) base64url characters; find n for the exact length.
    for (let pad = 0; fixed + Math.ceil(((payloadBytes + pad) * 4) / 3) <= length; pad++) {
      if (fixed + Math.ceil(((payloadBytes + pad) * 4) / 3) === length) {
        return signRaw(claims({ pad: 'x'.repeat(pad) }), primary.privateKey, { kid });
      }
    }
  }
  throw new Error(`could not build a token of exactly ${length} characters`);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (err: unknown) => err,
  );
}

/** Asserts the one uniform rejection: 401 auth.invalid_token `Unauthorized!` with WWW-Authenticate. */
async function expectInvalidToken(promise: Promise<unknown>): Promise<UnauthorizedError> {
  const err = await rejection(promise);
  expect(err).toBeInstanceOf(UnauthorizedError);
  const appError = err as UnauthorizedError;
  expect(appError.status).toBe(401);
  expect(appError.code).toBe('auth.invalid_token');
  expect(appError.message).toBe('Unauthorized!');
  expect(appError.headers).toEqual({ 'WWW-Authenticate': 'Bearer error="invalid_token"' });
  return appError;
}

describe('signAccessToken', () => {
  it('signs with RS256 and names the signing key in the header kid', () => {
    const decoded = jwt.decode(mint(), { complete: true });
    expect(decoded?.header).toMatchObject({ alg: 'RS256', kid: PRIMARY_KID, typ: 'JWT' });
  });

  it('carries sub, id, username, roles, ver, sid, iss, aud, iat, exp and jti', () => {
    const { token, expiresAt } = signAccessToken(
      { id: 42, username: 'bob', roles: ['user', 'moderator'], tokenVersion: 3 },
      { key: signingKey, issuer: ISSUER, audience: AUDIENCE, ttlSeconds: 600, nowSeconds: NOW, sessionId: 'session-1' },
    );
    expect(expiresAt).toBe(NOW + 600);
    expect(jwt.decode(token)).toEqual({
      sub: '42',
      id: 42,
      username: 'bob',
      roles: ['user', 'moderator'],
      ver: 3,
      sid: 'session-1',
      iss: ISSUER,
      aud: AUDIENCE,
      iat: NOW,
      exp: NOW + 600,
      jti: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/),
    });
  });

  it('gives every token a fresh jti', () => {
    const first = jwt.decode(mint()) as { jti: string };
    const second = jwt.decode(mint()) as { jti: string };
    expect(first.jti).not.toBe(second.jti);
  });

  it('produces a signature that verifies with the public key only', () => {
    const token = mint();
    expect(() => jwt.verify(token, primary.publicKey, { algorithms: ['RS256'], clockTimestamp: NOW })).not.toThrow();
    expect(() => jwt.verify(token, attacker.publicKey, { algorithms: ['RS256'], clockTimestamp: NOW })).toThrow(
      jwt.JsonWebTokenError,
    );
  });
});

describe('createTokenVerifier', () => {
  describe('accepts', () => {
    it('returns the claims of a token signed by a known key', async () => {
      const { verify, lookups } = setup();
      const token = mint({ id: 9, username: 'carol', roles: ['user', 'admin'] });
      const result: AccessTokenClaims = await verify(token);
      expect(result).toEqual({
        sub: '9',
        id: 9,
        username: 'carol',
        roles: ['user', 'admin'],
        ver: 0,
        iss: ISSUER,
        aud: AUDIENCE,
        iat: NOW,
        exp: NOW + TTL,
        jti: (jwt.decode(token) as { jti: string }).jti,
      });
      expect(lookups).toEqual([PRIMARY_KID]);
    });

    it('asks isRevoked with the verified claims and refuses the token when it answers true', async () => {
      const asked: unknown[] = [];
      const { verify } = setup({
        isRevoked: (claims) => {
          asked.push({ sub: claims.sub, ver: claims.ver });
          return claims.sub === '9';
        },
      });
      await expectInvalidToken(verify(mint({ id: 9 })));
      await expect(verify(mint({ id: 10 }))).resolves.toMatchObject({ sub: '10' });
      expect(asked).toEqual([
        { sub: '9', ver: 0 },
        { sub: '10', ver: 0 },
      ]);
    });

    it('accepts a token that expired less than the clock tolerance ago', async () => {
      const { verify } = setup({ nowSeconds: NOW + TTL + TOLERANCE - 1 });
      await expect(verify(mint())).resolves.toMatchObject({ username: 'alice' });
    });

    it('accepts a token whose aud is a list containing the audience', async () => {
      const { verify } = setup();
      const token = signRaw(claims({ aud: ['other', AUDIENCE] }), primary.privateKey, { kid: PRIMARY_KID });
      await expect(verify(token)).resolves.toMatchObject({ aud: ['other', AUDIENCE] });
    });

    it('accepts a kid of 128 URL-safe characters', async () => {
      const { verify } = setup();
      const token = signRaw(claims(), primary.privateKey, { kid: LONGEST_KID });
      await expect(verify(token)).resolves.toMatchObject({ sub: '7' });
    });

    it(`accepts a token of exactly ${MAX_TOKEN_LENGTH} characters`, async () => {
      const { verify } = setup();
      const token = signPadded(MAX_TOKEN_LENGTH);
      expect(token).toHaveLength(MAX_TOKEN_LENGTH);
      await expect(verify(token)).resolves.toMatchObject({ sub: '7' });
    });

    it('drops claims it does not know from the result', async () => {
      const { verify } = setup();
      const token = signRaw(claims({ isAdmin: true }), primary.privateKey, { kid: PRIMARY_KID });
      const result = await verify(token);
      expect(result).not.toHaveProperty('isAdmin');
    });
  });

  describe('rejects with 401 auth.invalid_token', () => {
    it('a token expired beyond the clock tolerance, keeping the reason as the cause', async () => {
      const { verify } = setup({ nowSeconds: NOW + TTL + TOLERANCE + 1 });
      const err = await expectInvalidToken(verify(mint()));
      expect(err.cause).toBeInstanceOf(jwt.TokenExpiredError);
    });

    it('a token judged by the injected clock even when the system clock would accept it', async () => {
      const nowReal = Math.floor(Date.now() / 1000);
      const { verify } = setup({ nowSeconds: nowReal + 3600 });
      await expectInvalidToken(verify(mint({}, { nowSeconds: nowReal })));
    });

    it('a token whose nbf lies in the future', async () => {
      const { verify } = setup();
      const token = signRaw(claims({ nbf: NOW + 600 }), primary.privateKey, { kid: PRIMARY_KID });
      const err = await expectInvalidToken(verify(token));
      expect(err.cause).toBeInstanceOf(jwt.NotBeforeError);
    });

    it('a token from another issuer', async () => {
      const { verify } = setup();
      await expectInvalidToken(verify(mint({}, { issuer: 'evil-issuer' })));
    });

    it('a token for another audience', async () => {
      const { verify } = setup();
      await expectInvalidToken(verify(mint({}, { audience: 'another-service' })));
    });

    it('a token whose payload was changed after signing', async () => {
      const { verify } = setup();
      const [header, payload, signature] = mint({ roles: ['user'] }).split('.');
      const claimsOfToken = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as Record<string, unknown>;
      const tampered = `${header}.${b64url({ ...claimsOfToken, roles: ['user', 'admin'] })}.${signature}`;
      await expectInvalidToken(verify(tampered));
    });

    it('a token signed by another key under a known kid', async () => {
      const { verify } = setup();
      await expectInvalidToken(verify(mint({}, { key: { kid: PRIMARY_KID, privateKey: attacker.privateKey } })));
    });

    it('a token whose kid the resolver does not know', async () => {
      const { verify, lookups } = setup();
      await expectInvalidToken(verify(mint({}, { key: { kid: 'retired-key', privateKey: primary.privateKey } })));
      expect(lookups).toEqual(['retired-key']);
    });

    it('a token without a kid, without looking a key up', async () => {
      const { verify, lookups } = setup();
      await expectInvalidToken(verify(signRaw(claims(), primary.privateKey)));
      expect(lookups).toEqual([]);
    });

    it.each([
      ['a path', '../../etc/passwd'],
      ['too long', 'k'.repeat(129)],
      ['empty', ''],
      ['with spaces', 'key one'],
      ['a number', 42],
      ['an object', { kid: PRIMARY_KID }],
    ])('a kid that is %s, without looking a key up', async (_label, kid) => {
      const { verify, lookups } = setup();
      await expectInvalidToken(verify(handSignedRs256({ alg: 'RS256', typ: 'JWT', kid }, claims())));
      expect(lookups).toEqual([]);
    });

    it('an unsigned alg none token, without looking a key up', async () => {
      const { verify, lookups } = setup();
      const token = `${b64url({ alg: 'none', typ: 'JWT', kid: PRIMARY_KID })}.${b64url(claims())}.`;
      await expectInvalidToken(verify(token));
      expect(lookups).toEqual([]);
    });

    it('an HS256 token whose HMAC secret is the PEM of the public key (algorithm confusion)', async () => {
      const { verify, lookups } = setup();
      const pem = primary.publicKey.export({ type: 'spki', format: 'pem' });
      const input = `${b64url({ alg: 'HS256', typ: 'JWT', kid: PRIMARY_KID })}.${b64url(claims({ roles: ['admin'] }))}`;
      const token = `${input}.${createHmac('sha256', pem).update(input).digest('base64url')}`;
      await expectInvalidToken(verify(token));
      expect(lookups).toEqual([]);
    });

    it.each<jwt.Algorithm>(['RS384', 'RS512', 'PS256'])(
      'a %s token validly signed by the right key, because only RS256 is allowed',
      async (algorithm) => {
        const { verify, lookups } = setup();
        await expectInvalidToken(verify(signRaw(claims(), primary.privateKey, { kid: PRIMARY_KID, algorithm })));
        expect(lookups).toEqual([]);
      },
    );

    it(`a validly signed token longer than ${MAX_TOKEN_LENGTH} characters, before any key lookup`, async () => {
      const { verify, lookups } = setup();
      const token = signPadded(MAX_TOKEN_LENGTH + 2);
      expect(token.length).toBeGreaterThan(MAX_TOKEN_LENGTH);
      await expectInvalidToken(verify(token));
      expect(lookups).toEqual([]);
    });

    it.each(['', 'abc', 'a.b.c', '...', 'a.b', 'eyJhbGciOiJSUzI1NiJ9', 'Bearer', `${b64url({ alg: 'RS256' })}..`])(
      'the garbage string %j',
      async (garbage) => {
        const { verify } = setup();
        await expectInvalidToken(verify(garbage));
      },
    );

    it('a token whose payload is a JSON string rather than an object', async () => {
      const { verify } = setup();
      await expectInvalidToken(verify(handSignedRs256({ alg: 'RS256', kid: PRIMARY_KID }, JSON.stringify('admin'))));
    });

    // Regression: jws.decode JSON.parses the payload of a `typ: "JWT"` token and throws a
    // SyntaxError when it is not JSON; that must be a 401, not a 500 in every service.
    it('a token with typ JWT whose payload is not JSON', async () => {
      const { verify } = setup();
      await expectInvalidToken(verify(handSignedRs256({ alg: 'RS256', typ: 'JWT', kid: PRIMARY_KID }, 'not json')));
    });

    it.each<[string, Record<string, unknown>, string[]]>([
      ['an unknown role', { roles: ['user', 'superuser'] }, []],
      ['roles that is not a list', { roles: 'admin' }, []],
      ['an id that is a string', { id: '7' }, []],
      ['an id that is not positive', { id: 0 }, []],
      ['an empty sub', { sub: '' }, []],
      ['no roles', {}, ['roles']],
      ['no username', {}, ['username']],
      ['no jti', {}, ['jti']],
      ['no exp', {}, ['exp']],
      ['no ver', {}, ['ver']],
      ['a negative ver', { ver: -1 }, []],
      ['a ver that is not an integer', { ver: 1.5 }, []],
    ])('a validly signed token with %s', async (_label, overrides, omit) => {
      const { verify } = setup();
      const token = signRaw(claims(overrides, omit), primary.privateKey, { kid: PRIMARY_KID });
      await expectInvalidToken(verify(token));
    });
  });

  it('never says why a token was refused in the message', async () => {
    const { verify } = setup();
    const reasons = await Promise.all(
      [mint({}, { issuer: 'x' }), mint({}, { audience: 'x' }), 'abc'].map((token) => rejection(verify(token))),
    );
    expect(reasons.map((err) => (err as Error).message)).toEqual(['Unauthorized!', 'Unauthorized!', 'Unauthorized!']);
  });
});

/** Just enough of a Koa context for the guards: headers in, state out. */
function fakeContext(headers: Record<string, string | string[]>, user?: AccessTokenClaims) {
  const ctx = { headers, state: user ? { user } : {} };
  return ctx as typeof ctx & Parameters<Middleware>[0];
}

/** Runs a middleware as Koa does: what it throws, at once or later, is a rejection. */
async function runMiddleware(middleware: Middleware, ctx: Parameters<Middleware>[0], next: () => Promise<unknown>): Promise<unknown> {
  return middleware(ctx, next);
}

function claimsWithRoles(roles: RoleName[]): AccessTokenClaims {
  return { sub: '7', id: 7, username: 'alice', roles, ver: 0, iss: ISSUER, aud: AUDIENCE, iat: NOW, exp: NOW + TTL, jti: randomUUID() };
}

describe('createTokenVerifier with a cache of verified tokens', () => {
  /** A verifier whose keys, clock and revocation answer can change between calls. */
  function cachedSetup(cacheSize: number) {
    const keys = new Map<string, KeyObject>([[PRIMARY_KID, primary.publicKey]]);
    const state = { now: NOW, revoked: false };
    const verify = createTokenVerifier({
      keys: { getKey: async (kid) => keys.get(kid), knownKey: (kid) => keys.get(kid) },
      issuer: ISSUER,
      audience: AUDIENCE,
      clockToleranceSeconds: TOLERANCE,
      nowSeconds: () => state.now,
      isRevoked: () => state.revoked,
      cacheSize,
    });
    return { verify, keys, state };
  }

  afterEach(() => jest.restoreAllMocks());

  it('checks the signature of a token once, and answers repeats from the cache with the same claims', async () => {
    const { verify } = cachedSetup(10);
    const signatureChecks = jest.spyOn(jwt, 'verify');
    const token = mint({ id: 11 });
    const first = await verify(token);
    expect(await verify(token)).toEqual(first);
    expect(await verify(token)).toEqual(first);
    expect(signatureChecks).toHaveBeenCalledTimes(1);
  });

  it('without a cache checks the signature every time', async () => {
    const { verify } = cachedSetup(0);
    const signatureChecks = jest.spyOn(jwt, 'verify');
    const token = mint();
    await verify(token);
    await verify(token);
    expect(signatureChecks).toHaveBeenCalledTimes(2);
  });

  it('refuses a cached token once it has expired', async () => {
    const { verify, state } = cachedSetup(10);
    const token = mint();
    await verify(token);
    state.now = NOW + TTL + TOLERANCE - 1;
    await expect(verify(token)).resolves.toMatchObject({ sub: '7' });
    state.now = NOW + TTL + TOLERANCE;
    await expectInvalidToken(verify(token));
  });

  it('refuses a cached token once its user is revoked', async () => {
    const { verify, state } = cachedSetup(10);
    const token = mint();
    await verify(token);
    state.revoked = true;
    await expectInvalidToken(verify(token));
  });

  it('refuses a cached token once its key is no longer published, and checks again when the key changed', async () => {
    const { verify, keys } = cachedSetup(10);
    const token = mint();
    await verify(token);
    keys.delete(PRIMARY_KID);
    await expectInvalidToken(verify(token));
    // Published again under the same kid but as another key: the signature no longer matches.
    keys.set(PRIMARY_KID, attacker.publicKey);
    await expectInvalidToken(verify(token));
  });

  it('keeps at most cacheSize tokens, dropping the oldest first', async () => {
    const { verify } = cachedSetup(2);
    const signatureChecks = jest.spyOn(jwt, 'verify');
    const [a, b, c] = [mint({ id: 1 }), mint({ id: 2 }), mint({ id: 3 })];
    for (const token of [a, b, c, c, b]) await verify(token);
    expect(signatureChecks).toHaveBeenCalledTimes(3);
    await verify(a);
    expect(signatureChecks).toHaveBeenCalledTimes(4);
  });

  it('checks in full a token that ends like a cached one, and keeps the cached one', async () => {
    const { verify } = cachedSetup(10);
    const signatureChecks = jest.spyOn(jwt, 'verify');
    const cached = mint({ id: 1 });
    await verify(cached);
    // Another user's claims, signed by an attacker, given the cached token's last characters.
    const forged = mint({ id: 2 }, { key: { kid: PRIMARY_KID, privateKey: attacker.privateKey } });
    const lookalike = forged.slice(0, -64) + cached.slice(-64);
    await expectInvalidToken(verify(lookalike));
    expect(signatureChecks).toHaveBeenCalledTimes(2);
    await expect(verify(cached)).resolves.toMatchObject({ id: 1 });
    expect(signatureChecks).toHaveBeenCalledTimes(2);
  });

  it('answers a hit from the keys already known, and checks in full when its kid is not among them', async () => {
    const published = new Map<string, KeyObject>([[PRIMARY_KID, primary.publicKey]]);
    const known = new Map(published);
    const fetches: string[] = [];
    const verify = createTokenVerifier({
      keys: {
        getKey: async (kid) => {
          fetches.push(kid);
          return published.get(kid);
        },
        knownKey: (kid) => known.get(kid),
      },
      issuer: ISSUER,
      audience: AUDIENCE,
      clockToleranceSeconds: TOLERANCE,
      nowSeconds: () => NOW,
      cacheSize: 10,
    });
    const signatureChecks = jest.spyOn(jwt, 'verify');
    const token = mint();
    await verify(token);
    await verify(token);
    expect([fetches.length, signatureChecks.mock.calls.length]).toEqual([1, 1]);
    // Not known right now (say, the cached keys were replaced): the full check may fetch it.
    known.clear();
    await expect(verify(token)).resolves.toMatchObject({ sub: '7' });
    expect([fetches.length, signatureChecks.mock.calls.length]).toEqual([2, 2]);
  });

  it('never caches a refusal', async () => {
    const { verify } = cachedSetup(10);
    const forged = mint({}, { key: { kid: PRIMARY_KID, privateKey: attacker.privateKey } });
    await expectInvalidToken(verify(forged));
    await expectInvalidToken(verify(forged));
  });
});

describe('readToken', () => {
  it.each<[string, Record<string, string | string[]>, string | undefined]>([
    ['x-access-token', { 'x-access-token': 'tok1' }, 'tok1'],
    ['Authorization: Bearer', { authorization: 'Bearer tok2' }, 'tok2'],
    ['a lower-case bearer scheme with extra spaces', { authorization: 'bearer    tok3  ' }, 'tok3'],
    ['a bare token in Authorization, as the tutorial allowed', { authorization: 'tok4' }, 'tok4'],
    ['a Bearer prefix in x-access-token', { 'x-access-token': 'Bearer tok5' }, 'tok5'],
    ['x-access-token before Authorization', { 'x-access-token': 'tok6', authorization: 'Bearer other' }, 'tok6'],
    ['the first of repeated values', { 'x-access-token': ['tok7', 'tok8'] }, 'tok7'],
    ['nothing when no header is sent', {}, undefined],
    ['nothing for a blank header', { authorization: '   ' }, undefined],
    ['Authorization when x-access-token is sent empty', { 'x-access-token': '', authorization: 'Bearer tok9' }, 'tok9'],
    ['nothing for a Bearer scheme without a token', { authorization: 'Bearer' }, undefined],
  ])('reads %s', (_label, headers, expected) => {
    expect(readToken(headers)).toBe(expected);
  });
});

describe('requireAuth', () => {
  it('throws 403 auth.no_token No token provided! without calling next when no token is sent', async () => {
    const verify = jest.fn<Promise<AccessTokenClaims>, [string]>();
    const next = jest.fn(async () => undefined);
    const err = await rejection(requireAuth({ verify })(fakeContext({}), next));
    expect(err).toBeInstanceOf(ForbiddenError);
    expect(err).toMatchObject({ status: 403, code: 'auth.no_token', message: 'No token provided!' });
    expect(verify).not.toHaveBeenCalled();
    expect(next).not.toHaveBeenCalled();
  });

  it('puts the verified claims on ctx.state.user and calls next', async () => {
    const { verify } = setup();
    const ctx = fakeContext({ authorization: `Bearer ${mint({ username: 'dave', roles: ['user', 'moderator'] })}` });
    const next = jest.fn(async () => undefined);
    await requireAuth({ verify })(ctx, next);
    expect(ctx.state.user).toMatchObject({ username: 'dave', roles: ['user', 'moderator'] });
    expect(next).toHaveBeenCalledTimes(1);
  });

  it('passes on the verifier 401 without setting a user or calling next', async () => {
    const { verify } = setup();
    const ctx = fakeContext({ 'x-access-token': mint({}, { issuer: 'evil' }) });
    const next = jest.fn(async () => undefined);
    await expectInvalidToken(Promise.resolve(requireAuth({ verify })(ctx, next)));
    expect(ctx.state.user).toBeUndefined();
    expect(next).not.toHaveBeenCalled();
  });
});

describe('requireRole', () => {
  it('calls next when the token carries the role', async () => {
    const next = jest.fn(async () => undefined);
    await requireRole('moderator')(fakeContext({}, claimsWithRoles(['user', 'moderator'])), next);
    expect(next).toHaveBeenCalledTimes(1);
  });

  it.each<[RoleName, RoleName[], string]>([
    ['moderator', ['user'], 'Require Moderator Role!'],
    ['admin', ['user'], 'Require Admin Role!'],
    ['admin', ['user', 'moderator'], 'Require Admin Role!'],
    ['user', [], 'Require User Role!'],
  ])('throws 403 auth.missing_role when %s is required and the token has %j', async (role, roles, message) => {
    const next = jest.fn(async () => undefined);
    const err = await rejection(runMiddleware(requireRole(role), fakeContext({}, claimsWithRoles(roles)), next));
    expect(err).toBeInstanceOf(ForbiddenError);
    expect(err).toMatchObject({ status: 403, code: 'auth.missing_role', message, details: { required: role } });
    expect(next).not.toHaveBeenCalled();
  });

  it('throws 403 rather than crashing when no user was authenticated', async () => {
    const next = jest.fn(async () => undefined);
    const err = await rejection(runMiddleware(requireRole('admin'), fakeContext({}), next));
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ status: 403, message: 'Require Admin Role!' });
    expect(next).not.toHaveBeenCalled();
  });
});
