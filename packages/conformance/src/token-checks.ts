import type { JsonWebKey } from 'node:crypto';
import type { Check, CheckContext } from './context';
import { randomHex } from './context';
import { describeResponse, isRecord, type HttpResponse } from './http';
import { base64url, decodeJwtPart, jwkToPem, signHs256, signRs256, signingInput, unsignedJwt, type AttackerKey, type JwtPart } from './jwt';

// Every forged token goes to a protected board and must get 401 `Unauthorized!`, sent either
// way clients send tokens. Forged tokens start from a real token's header and claims, so the
// one thing that differs is the thing under test.

const USER_BOARD = '/api/test/user';
const ADMIN_BOARD = '/api/test/admin';
const ALL_ROLES = ['user', 'moderator', 'admin'];
// Well past any clock tolerance a verifier may allow (Gatehouse allows at most 300 s).
const ONE_HOUR_S = 3600;
// Gatehouse refuses tokens longer than 8 KiB before parsing them.
const MAX_TOKEN_LENGTH = 8192;

/** Both ways the tutorial's clients send a token. */
function tokenHeaderStyles(token: string): [style: string, headers: Record<string, string>][] {
  return [
    ['Authorization: Bearer', { authorization: `Bearer ${token}` }],
    ['x-access-token', { 'x-access-token': token }],
  ];
}

function verdict(res: HttpResponse, expected: string): string {
  if (res.status >= 200 && res.status < 300) return `accepted: ${describeResponse(res)}`;
  if (res.status >= 500) return `server error: ${describeResponse(res)}`;
  return `expected ${expected}, got ${describeResponse(res)}`;
}

/** Sends `token` both ways to `path` and insists on 401 `{message:'Unauthorized!'}` each time. */
async function expectRefused(ctx: CheckContext, token: string, path = USER_BOARD, label = 'token'): Promise<void> {
  for (const [style, headers] of tokenHeaderStyles(token)) {
    const res = await ctx.request('GET', path, { headers });
    if (res.status === 401 && isRecord(res.json) && res.json.message === 'Unauthorized!') continue;
    throw new Error(`${label} via ${style} at ${path}: ${verdict(res, "401 {message:'Unauthorized!'}")}`);
  }
}

/** A real token of a fresh user, taken apart, plus what an attacker has at hand. */
interface TokenMaterial {
  token: string;
  header: JwtPart;
  claims: JwtPart;
  kid: string;
  attacker: AttackerKey;
  ctx: CheckContext;
}

async function tokenMaterial(ctx: CheckContext): Promise<TokenMaterial> {
  const token = await ctx.freshAccessToken();
  const header = decodeJwtPart(token, 0);
  const claims = decodeJwtPart(token, 1);
  const kid = header.kid;
  if (typeof kid !== 'string') throw new Error(`the token from sign-in has no kid header: ${JSON.stringify(header)}`);
  return { token, header, claims, kid, attacker: await ctx.attackerKey(), ctx };
}

/** The published key the real token names; the algorithm-confusion attack needs it. */
async function publishedKey(ctx: CheckContext, kid: string): Promise<JsonWebKey> {
  const keys = await ctx.jwks();
  const key = keys.find((jwk) => isRecord(jwk) && jwk.kid === kid);
  if (!key) throw new Error(`the JWKS does not list the kid of the sign-in token (${kid})`);
  return key;
}

/** A check that forges a token from a fresh user's real one and expects it refused. */
function forgedTokenCheck(name: string, forge: (m: TokenMaterial) => string | Promise<string>, path = USER_BOARD): Check {
  return {
    group: 'tokens',
    name,
    async run(ctx) {
      await expectRefused(ctx, await forge(await tokenMaterial(ctx)), path, 'forged token');
    },
  };
}

/** Signed by the attacker with the real kid and the real claims changed by `changes`. */
function attackerSigned(m: TokenMaterial, changes: JwtPart = {}, header: JwtPart = {}): string {
  return signRs256({ ...m.header, ...header }, { ...m.claims, ...changes }, m.attacker.privateKey);
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

const HOSTILE_KIDS: [label: string, kid: unknown][] = [
  ['path traversal', '../../etc/passwd'],
  ['SQL injection', "' OR '1'='1"],
  ['300 characters', 'k'.repeat(300)],
  ['a number', 1],
  ['an object', { $ne: null }],
];

/** The checks of the tokens group. */
export const tokenChecks: readonly Check[] = [
  {
    group: 'tokens',
    name: 'a real token from sign-in is accepted',
    async run(ctx) {
      const token = await ctx.freshAccessToken();
      for (const [style, headers] of tokenHeaderStyles(token)) {
        const res = await ctx.request('GET', USER_BOARD, { headers });
        if (res.status !== 200) throw new Error(`a real token via ${style}: expected 200, got ${describeResponse(res)}`);
      }
    },
  },
  forgedTokenCheck('alg none (unsigned) is refused', (m) => unsignedJwt({ ...m.header, alg: 'none' }, m.claims)),
  forgedTokenCheck('HS256 with the public key as secret (algorithm confusion) is refused', async (m) =>
    signHs256({ ...m.header, alg: 'HS256' }, m.claims, jwkToPem(await publishedKey(m.ctx, m.kid))),
  ),
  forgedTokenCheck(
    'changed roles with the original signature are refused',
    (m) => {
      const signature = m.token.split('.')[2] ?? '';
      return `${signingInput(m.header, { ...m.claims, roles: ALL_ROLES })}.${signature}`;
    },
    ADMIN_BOARD,
  ),
  forgedTokenCheck('attacker key naming the real kid is refused', (m) => attackerSigned(m)),
  forgedTokenCheck('wrong issuer is refused', (m) => attackerSigned(m, { iss: 'https://evil.example' })),
  forgedTokenCheck('wrong audience is refused', (m) => attackerSigned(m, { aud: 'https://evil.example' })),
  forgedTokenCheck('expired token is refused', (m) =>
    attackerSigned(m, { iat: nowSeconds() - 2 * ONE_HOUR_S, exp: nowSeconds() - ONE_HOUR_S }),
  ),
  forgedTokenCheck('token not valid yet (nbf in the future) is refused', (m) => attackerSigned(m, { nbf: nowSeconds() + ONE_HOUR_S })),
  forgedTokenCheck('unknown kid is refused', (m) => attackerSigned(m, {}, { kid: randomHex(16) })),
  {
    group: 'tokens',
    name: 'hostile kid values are refused',
    async run(ctx) {
      const m = await tokenMaterial(ctx);
      for (const [label, kid] of HOSTILE_KIDS) {
        await expectRefused(ctx, attackerSigned(m, {}, { kid }), USER_BOARD, `kid ${label}`);
      }
    },
  },
  forgedTokenCheck('embedded jwk header with the attacker key is refused', (m) =>
    attackerSigned(m, {}, { kid: m.attacker.kid, jwk: { ...m.attacker.publicJwk, kid: m.attacker.kid } }),
  ),
  forgedTokenCheck('jku header pointing elsewhere is refused', (m) =>
    attackerSigned(m, {}, { kid: m.attacker.kid, jku: 'https://evil.example/.well-known/jwks.json' }),
  ),
  forgedTokenCheck('token over 8 KiB is refused', (m) => {
    const token = attackerSigned(m, { padding: 'x'.repeat(MAX_TOKEN_LENGTH) });
    if (token.length <= MAX_TOKEN_LENGTH) throw new Error('the oversized token came out too short');
    return token;
  }),
  {
    group: 'tokens',
    name: 'malformed tokens are refused',
    async run(ctx) {
      const keys = await ctx.jwks();
      const kid = keys[0]?.kid ?? 'unknown';
      const header = base64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid }));
      const malformed: [string, string][] = [
        ['a.b', 'a.b'],
        ['a.b.c', 'a.b.c'],
        ['....', '....'],
        ['%%%.%%%.%%%', '%%%.%%%.%%%'],
        ['a valid header over a garbage payload', `${header}.${base64url('{"sub":')}.${base64url('garbage')}`],
      ];
      for (const [label, token] of malformed) await expectRefused(ctx, token, USER_BOARD, `malformed token ${label}`);
    },
  },
  {
    group: 'tokens',
    name: "an absent or empty token gets 403 'No token provided!'",
    async run(ctx) {
      const variants: [string, Record<string, string>][] = [
        ['no token header', {}],
        ['empty x-access-token', { 'x-access-token': '' }],
        ['empty Authorization', { authorization: '' }],
        ['Authorization: Bearer with no token', { authorization: 'Bearer ' }],
      ];
      for (const [label, headers] of variants) {
        const res = await ctx.request('GET', USER_BOARD, { headers });
        if (res.status === 403 && isRecord(res.json) && res.json.message === 'No token provided!') continue;
        throw new Error(`${label}: ${verdict(res, "403 {message:'No token provided!'}")}`);
      }
    },
  },
];
