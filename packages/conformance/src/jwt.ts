import { createHash, createHmac, createPublicKey, generateKeyPair, sign, type JsonWebKey, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';

// Hand-made JWTs with node:crypto only: forging is the point, and a JWT library would refuse
// to build most of these tokens (unsigned, hostile headers, confused algorithms).

/** A JWT header or claims set: any JSON object, hostile values included. */
export type JwtPart = Record<string, unknown>;

/** Base64url without padding (RFC 7515 §2). */
export function base64url(input: string | Buffer): string {
  return Buffer.from(input).toString('base64url');
}

/** `base64url(header).base64url(claims)`: the signing input of a JWS. */
export function signingInput(header: JwtPart, claims: JwtPart): string {
  return `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
}

/** An unsigned token (`alg: none`): the signing input and an empty signature. */
export function unsignedJwt(header: JwtPart, claims: JwtPart): string {
  return `${signingInput(header, claims)}.`;
}

/** A token signed with RS256 by `privateKey`, whatever `header` says. */
export function signRs256(header: JwtPart, claims: JwtPart, privateKey: KeyObject): string {
  const input = signingInput(header, claims);
  return `${input}.${sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
}

/** A token signed with HMAC-SHA256 under `secret`, whatever `header` says. */
export function signHs256(header: JwtPart, claims: JwtPart, secret: string | Buffer): string {
  const input = signingInput(header, claims);
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

/** One part of a token (0: header, 1: claims), decoded without verifying. */
export function decodeJwtPart(token: string, index: 0 | 1): JwtPart {
  const part = token.split('.')[index];
  if (part === undefined) throw new Error('not a JWT: fewer than three parts');
  const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JWT: a part is not a JSON object');
  return { ...value };
}

/** A JWK as PEM (SPKI), the way a careless verifier would turn it into an HMAC secret. */
export function jwkToPem(jwk: JsonWebKey): string {
  const pem = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
  return pem.toString();
}

/** An attacker's RSA key pair, with its public JWK and RFC 7638 thumbprint as `kid`. */
export interface AttackerKey {
  privateKey: KeyObject;
  publicJwk: JsonWebKey;
  kid: string;
}

/** RFC 7638 thumbprint of an RSA public JWK: SHA-256 over the required members in order. */
function rsaThumbprint(jwk: JsonWebKey): string {
  return createHash('sha256').update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n })).digest('base64url');
}

/** Generates a fresh 2048-bit RSA key pair that the server has never seen. */
export async function createAttackerKey(): Promise<AttackerKey> {
  const { privateKey, publicKey } = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 });
  const publicJwk = publicKey.export({ format: 'jwk' });
  return { privateKey, publicJwk, kid: rsaThumbprint(publicJwk) };
}
