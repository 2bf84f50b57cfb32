import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSilentLogger } from '@gatehouse/common';
import { createJwksClient, toPublicJwk, type JwksClientOptions } from './jwks';

// A real HTTP server plays the auth service's JWKS endpoint; the tests count its requests.

interface JwksServer {
  url: string;
  /** Requests received so far. */
  requests: number;
  /** What the next responses carry. */
  keys: unknown[];
  status: number;
  /** A raw body to send instead of `{ keys }`. */
  rawBody?: string;
  delayMs: number;
  close(): Promise<void>;
}

async function startJwksServer(keys: unknown[]): Promise<JwksServer> {
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer((req, res) => {
    state.requests += 1;
    const respond = () => {
      if (res.destroyed) return;
      if (req.url !== '/.well-known/jwks.json') {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(state.status, { 'content-type': 'application/json' });
      res.end(state.rawBody ?? JSON.stringify({ keys: state.keys }));
    };
    if (state.delayMs <= 0) return respond();
    const timer = setTimeout(() => {
      timers.delete(timer);
      respond();
    }, state.delayMs);
    timers.add(timer);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let closed = false;
  const state: JwksServer = {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    requests: 0,
    keys,
    status: 200,
    delayMs: 0,
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of timers) clearTimeout(timer);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return state;
}

function rsaPublicKey(): KeyObject {
  return generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
}

const keyA = rsaPublicKey();
const keyB = rsaPublicKey();
const keyC = rsaPublicKey();
const jwkA = toPublicJwk('key-a', keyA);
const jwkB = toPublicJwk('key-b', keyB);
const jwkC = toPublicJwk('key-c', keyC);

const servers: JwksServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function serve(keys: unknown[]): Promise<JwksServer> {
  const server = await startJwksServer(keys);
  servers.push(server);
  return server;
}

/** A client with a hand-driven clock: `clock.ms` is what `now()` answers. */
function client(url: string, options: Partial<JwksClientOptions> = {}) {
  const clock = { ms: 1_000_000 };
  const keys = createJwksClient({
    url,
    logger: createSilentLogger(),
    minRefetchIntervalMs: 10_000,
    now: () => clock.ms,
    ...options,
  });
  return { keys, clock };
}

describe('toPublicJwk', () => {
  it('publishes the public half as an RS256 signing key under its kid', () => {
    const exported = keyA.export({ format: 'jwk' });
    expect(jwkA).toEqual({ kty: 'RSA', kid: 'key-a', use: 'sig', alg: 'RS256', n: exported.n, e: exported.e });
  });

  it('refuses a key that is not RSA', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(() => toPublicJwk('ec-key', publicKey)).toThrow('signing key ec-key is not an RSA key');
  });
});

describe('createJwksClient', () => {
  it('loads every key of the JWKS on refresh()', async () => {
    const server = await serve([jwkA, jwkB]);
    const { keys } = client(server.url);
    expect(keys.size).toBe(0);
    await keys.refresh();
    expect(keys.size).toBe(2);
    expect((await keys.getKey('key-a'))?.equals(keyA)).toBe(true);
    expect((await keys.getKey('key-b'))?.equals(keyB)).toBe(true);
    expect(server.requests).toBe(1);
  });

  it('fetches the JWKS on the first getKey when nothing is cached yet', async () => {
    const server = await serve([jwkA]);
    const { keys } = client(server.url);
    expect((await keys.getKey('key-a'))?.equals(keyA)).toBe(true);
    expect(server.requests).toBe(1);
  });

  it('knownKey answers from the cache only, and never fetches', async () => {
    const server = await serve([jwkA]);
    const { keys } = client(server.url);
    expect(keys.knownKey('key-a')).toBeUndefined();
    // A fetch started in the background would have reached the server by now.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(server.requests).toBe(0);
    await keys.refresh();
    expect(keys.knownKey('key-a')?.equals(keyA)).toBe(true);
    expect(keys.knownKey('key-b')).toBeUndefined();
    expect(server.requests).toBe(1);
  });

  it('answers a known kid from the cache without calling the server again', async () => {
    const server = await serve([jwkA, jwkB]);
    const { keys, clock } = client(server.url);
    await keys.refresh();
    clock.ms += 60_000;
    await keys.getKey('key-a');
    await keys.getKey('key-b');
    await keys.getKey('key-a');
    expect(server.requests).toBe(1);
  });

  it('refetches on an unknown kid and finds a key published since the last fetch', async () => {
    const server = await serve([jwkA]);
    const { keys, clock } = client(server.url);
    await keys.refresh();
    server.keys = [jwkA, jwkB];
    clock.ms += 10_000;
    expect((await keys.getKey('key-b'))?.equals(keyB)).toBe(true);
    expect(server.requests).toBe(2);
    expect(keys.size).toBe(2);
  });

  it('refetches for unknown kids at most once per minRefetchIntervalMs', async () => {
    const server = await serve([jwkA]);
    const { keys, clock } = client(server.url, { minRefetchIntervalMs: 10_000 });
    await keys.refresh();
    server.keys = [jwkA, jwkB];

    clock.ms += 1;
    expect(await keys.getKey('forged-1')).toBeUndefined();
    clock.ms += 9_998; // 9 999 ms after the last fetch
    expect(await keys.getKey('key-b')).toBeUndefined();
    expect(await keys.getKey('forged-2')).toBeUndefined();
    expect(server.requests).toBe(1);

    clock.ms += 1; // exactly 10 000 ms after the last fetch
    expect((await keys.getKey('key-b'))?.equals(keyB)).toBe(true);
    expect(server.requests).toBe(2);

    expect(await keys.getKey('forged-3')).toBeUndefined();
    expect(server.requests).toBe(2);
  });

  it('counts a failed fetch against the refetch interval, so a down auth service is not hammered', async () => {
    const server = await serve([jwkA]);
    const { keys, clock } = client(server.url);
    server.status = 503;
    expect(await keys.getKey('key-a')).toBeUndefined();
    clock.ms += 5_000;
    server.status = 200;
    expect(await keys.getKey('key-a')).toBeUndefined();
    expect(server.requests).toBe(1);
    clock.ms += 5_000;
    expect((await keys.getKey('key-a'))?.equals(keyA)).toBe(true);
    expect(server.requests).toBe(2);
  });

  it('shares one fetch between concurrent misses', async () => {
    const server = await serve([jwkA, jwkB]);
    server.delayMs = 100;
    const { keys } = client(server.url);
    const found = await Promise.all([
      keys.getKey('key-a'),
      keys.getKey('key-b'),
      keys.getKey('key-a'),
      keys.getKey('unknown-1'),
      keys.getKey('unknown-2'),
    ]);
    expect(found.map((key) => key !== undefined)).toEqual([true, true, true, false, false]);
    expect(server.requests).toBe(1);
  });

  it('shares one fetch between concurrent refresh() calls', async () => {
    const server = await serve([jwkA]);
    server.delayMs = 100;
    const { keys } = client(server.url);
    await Promise.all([keys.refresh(), keys.refresh(), keys.refresh()]);
    expect(server.requests).toBe(1);
    await keys.refresh();
    expect(server.requests).toBe(2);
  });

  it('forgets keys removed from the JWKS once it refreshes', async () => {
    const server = await serve([jwkA, jwkB]);
    const { keys, clock } = client(server.url);
    await keys.refresh();
    server.keys = [jwkB, jwkC];
    await keys.refresh();
    expect(keys.size).toBe(2);
    clock.ms += 10_000;
    expect(await keys.getKey('key-a')).toBeUndefined();
    expect((await keys.getKey('key-c'))?.equals(keyC)).toBe(true);
  });

  it('keeps serving the cached keys after the server has gone down', async () => {
    const server = await serve([jwkA, jwkB]);
    const { keys, clock } = client(server.url);
    await keys.refresh();
    await server.close();

    await expect(keys.refresh()).rejects.toThrow();
    expect(keys.size).toBe(2);
    clock.ms += 10_000;
    expect((await keys.getKey('key-a'))?.equals(keyA)).toBe(true);
    // An unknown kid tries the dead server and resolves to nothing instead of throwing.
    await expect(keys.getKey('key-new')).resolves.toBeUndefined();
    expect((await keys.getKey('key-b'))?.equals(keyB)).toBe(true);
  });

  it.each<[string, Partial<JwksServer>]>([
    ['answers 500', { status: 500 }],
    ['answers 404', { status: 404 }],
    ['answers something that is not JSON', { rawBody: '<html>maintenance</html>' }],
    ['answers JSON without a keys array', { rawBody: '{}' }],
  ])('keeps the cached keys when the JWKS %s', async (_label, failure) => {
    const server = await serve([jwkA]);
    const { keys, clock } = client(server.url);
    await keys.refresh();
    Object.assign(server, failure);
    await expect(keys.refresh()).rejects.toThrow();
    clock.ms += 10_000;
    expect(await keys.getKey('key-b')).toBeUndefined();
    expect(server.requests).toBe(3);
    expect((await keys.getKey('key-a'))?.equals(keyA)).toBe(true);
    expect(keys.size).toBe(1);
  });

  it('gives up on a JWKS that does not answer within timeoutMs', async () => {
    const server = await serve([jwkA]);
    server.delayMs = 10_000;
    const { keys } = client(server.url, { timeoutMs: 200 });
    const started = Date.now();
    await expect(keys.getKey('key-a')).resolves.toBeUndefined();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(server.requests).toBe(1);
  });

  it('ignores entries that are not RSA public keys for RS256 signatures', async () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    const rsa = keyC.export({ format: 'jwk' });
    const server = await serve([
      jwkA,
      { ...ec, kid: 'ec-key', use: 'sig', alg: 'ES256' },
      { kty: 'oct', kid: 'hmac-key', alg: 'HS256', k: Buffer.from('shared-secret').toString('base64url') },
      { ...rsa, kid: 'rsa-as-hs256', use: 'sig', alg: 'HS256' },
      { ...rsa, kid: 'rsa-as-rs512', use: 'sig', alg: 'RS512' },
      { ...rsa, kid: 'rsa-as-none', alg: 'none' },
      { ...rsa, kid: 'rsa-for-encryption', use: 'enc', alg: 'RS256' },
      { ...rsa, use: 'sig', alg: 'RS256' },
      { ...rsa, kid: 42, use: 'sig', alg: 'RS256' },
      { kty: 'RSA', kid: 'no-modulus', e: rsa.e, use: 'sig', alg: 'RS256' },
      null,
      'key-string',
      [jwkC],
      // RSA without `use` and `alg` is still an RS256-capable signing key.
      { kty: 'RSA', kid: 'bare-rsa', n: rsa.n, e: rsa.e },
    ]);
    const { keys } = client(server.url);
    await keys.refresh();
    expect(keys.size).toBe(2);
    expect((await keys.getKey('key-a'))?.equals(keyA)).toBe(true);
    expect((await keys.getKey('bare-rsa'))?.equals(keyC)).toBe(true);
    for (const kid of ['ec-key', 'hmac-key', 'rsa-as-hs256', 'rsa-as-rs512', 'rsa-as-none', 'rsa-for-encryption', 'no-modulus', '42']) {
      expect(await keys.getKey(kid)).toBeUndefined();
    }
    expect(server.requests).toBe(1);
  });

  it('uses the injected fetch', async () => {
    const seen: string[] = [];
    const fakeFetch: typeof fetch = async (input) => {
      seen.push(String(input));
      return new Response(JSON.stringify({ keys: [jwkB] }), { status: 200, headers: { 'content-type': 'application/json' } });
    };
    const { keys } = client('http://jwks.invalid/keys', { fetch: fakeFetch });
    expect((await keys.getKey('key-b'))?.equals(keyB)).toBe(true);
    expect(seen).toEqual(['http://jwks.invalid/keys']);
  });
});
