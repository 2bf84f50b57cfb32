import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Refresh tokens are 256 random bits, base64url: 43 characters (`REFRESH_TOKEN_PATTERN` in
 * @gatehouse/api, which validates them). Only their SHA-256 is stored; a fast hash is enough
 * for a secret this long, and lets a token be found by its hash.
 */

/** A new refresh token: 32 random bytes, base64url. */
export function generateRefreshToken(): string {
  return randomBytes(32).toString('base64url');
}

/** What is stored and looked up instead of the token: its SHA-256, hex. */
export function hashRefreshToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function sealingKey(parentToken: string): Buffer {
  return Buffer.from(hkdfSync('sha256', parentToken, Buffer.alloc(0), 'gatehouse refresh successor', 32));
}

/**
 * Encrypts a successor token with a key derived from its parent token (AES-256-GCM). Only
 * someone presenting the parent can read it back, so the database still holds no usable
 * token; this is what lets the reuse interval hand the same successor to a second tab.
 */
export function sealSuccessor(parentToken: string, successorToken: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', sealingKey(parentToken), iv);
  const sealed = Buffer.concat([cipher.update(successorToken, 'utf8'), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64url');
}

/** Reverses `sealSuccessor`; throws when `sealed` was not made from `parentToken`. */
export function unsealSuccessor(parentToken: string, sealed: string): string {
  const bytes = Buffer.from(sealed, 'base64url');
  const decipher = createDecipheriv('aes-256-gcm', sealingKey(parentToken), bytes.subarray(0, 12));
  decipher.setAuthTag(bytes.subarray(12, 28));
  return Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8');
}
