import { createHash, createPrivateKey, createPublicKey, generateKeyPair } from 'node:crypto';
import { promisify } from 'node:util';
import type { Knex } from 'knex';
import type { Logger } from '@gatehouse/common';
import { toPublicJwk, type PublicJwk, type SigningKey } from '@gatehouse/tokens';

const generateRsaKeyPair = promisify(generateKeyPair);

export interface KeyStore {
  /** The key new tokens are signed with. */
  current: SigningKey;
  /** The JWKS document: every public key a valid token may name. */
  jwks: { keys: PublicJwk[] };
}

interface SigningKeyRow {
  kid: string;
  private_key_pem: string;
  public_jwk: PublicJwk | string;
}

/** RFC 7638 thumbprint of an RSA public JWK: a stable `kid` derived from the key itself. */
function thumbprint(jwk: { e: string; n: string }): string {
  return createHash('sha256')
    .update(JSON.stringify({ e: jwk.e, kty: 'RSA', n: jwk.n }))
    .digest('base64url');
}

/**
 * Loads the signing keys from `signing_keys`, creating the first key pair when there is none.
 *
 * @remarks Keys live in the database so that every auth instance signs with the same key. The
 * first start takes a transaction-scoped advisory lock, so two instances starting together
 * create one key, not two.
 */
export async function loadSigningKeys(knex: Knex, logger: Logger): Promise<KeyStore> {
  const rows = await knex.transaction(async (trx) => {
    await trx.raw("SELECT pg_advisory_xact_lock(hashtext('gatehouse.signing_keys'))");
    const existing: SigningKeyRow[] = await trx('signing_keys')
      .whereNull('retired_at')
      .orderBy('created_at', 'desc')
      .orderBy('kid')
      .select('kid', 'private_key_pem', 'public_jwk');
    if (existing.length > 0) return existing;

    const { privateKey } = await generateRsaKeyPair('rsa', { modulusLength: 2048 });
    const provisional = toPublicJwk('pending', createPublicKey(privateKey));
    const kid = thumbprint(provisional);
    const created: SigningKeyRow = {
      kid,
      private_key_pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      public_jwk: { ...provisional, kid },
    };
    await trx('signing_keys').insert({ ...created, public_jwk: JSON.stringify(created.public_jwk) });
    logger.info({ kid }, 'created the first signing key');
    return [created];
  });

  const [newest] = rows;
  if (!newest) throw new Error('no signing key after creating one');
  const publicJwk = (row: SigningKeyRow): PublicJwk =>
    typeof row.public_jwk === 'string' ? JSON.parse(row.public_jwk) : row.public_jwk;
  return {
    current: { kid: newest.kid, privateKey: createPrivateKey(newest.private_key_pem) },
    jwks: { keys: rows.map(publicJwk) },
  };
}
