import { createHash, createPrivateKey, createPublicKey, generateKeyPair, type JsonWebKey, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import type { Knex } from 'knex';
import { repeatEvery, type Logger } from '@gatehouse/common';
import { createEventRepository } from '../db/repositories/event.repository';
import { toPublicJwk, type KeyResolver, type PublicJwk, type SigningKey } from '@gatehouse/tokens';

const generateRsaKeyPair = promisify(generateKeyPair);

/** Serialises key creation across instances and the CLI. */
const KEYS_LOCK = "SELECT pg_advisory_xact_lock(hashtext('gatehouse.signing_keys'))";

/**
 * How long a retired key stays in the JWKS: one access-token lifetime, plus the largest clock
 * tolerance a verifier may use, so every token it signed expires before its key disappears.
 */
export function keyRetentionSeconds(accessTokenTtlSeconds: number): number {
  return accessTokenTtlSeconds + 300;
}

export interface KeyStore extends KeyResolver {
  /** The key new tokens are signed with. */
  readonly current: SigningKey;
  /** The JWKS document: the active key and the retired ones still within their retention. */
  publicJwks(): Promise<{ keys: PublicJwk[] }>;
  /** Rereads the keys, so a rotation made by another instance or the CLI takes effect here. */
  reload(): Promise<void>;
  /** Rereads every `intervalMs` until the returned function is called. */
  startReloading(intervalMs: number): () => void;
}

interface SigningKeyRow {
  kid: string;
  private_key_pem: string;
  public_jwk: PublicJwk | string;
  created_at: Date;
  /** From then on the key signs; published before, so verifiers can fetch it in advance. */
  activates_at: Date;
  /** From then on the key no longer signs; published for the retention after. */
  retired_at: Date | null;
}

/** What a key store needs: a logger, the clock, and the token lifetime (for the retention). */
export interface KeyStoreOptions {
  logger: Logger;
  clock: () => Date;
  accessTokenTtlSeconds: number;
}

/** RFC 7638 thumbprint of an RSA public JWK: a stable `kid` derived from the key itself. */
function thumbprint(jwk: { e: string; n: string }): string {
  return createHash('sha256')
    .update(JSON.stringify({ e: jwk.e, kty: 'RSA', n: jwk.n }))
    .digest('base64url');
}

function publicJwkOf(row: SigningKeyRow): PublicJwk {
  return typeof row.public_jwk === 'string' ? JSON.parse(row.public_jwk) : row.public_jwk;
}

/** A key pair ready to store, its kid the JWK thumbprint. */
interface NewKey {
  kid: string;
  privateKeyPem: string;
  publicJwk: JsonWebKey;
}

/**
 * Generates a key pair. Done before taking the keys lock: on a busy machine RSA generation
 * takes seconds, and another instance waiting for the lock would hit the statement timeout.
 */
async function generateKey(): Promise<NewKey> {
  const { privateKey } = await generateRsaKeyPair('rsa', { modulusLength: 2048 });
  const provisional = toPublicJwk('pending', createPublicKey(privateKey));
  const kid = thumbprint(provisional);
  return { kid, privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), publicJwk: { ...provisional, kid } };
}

async function insertKey(trx: Knex, key: NewKey, now: Date, activatesAt: Date): Promise<void> {
  await trx('signing_keys').insert({
    kid: key.kid,
    private_key_pem: key.privateKeyPem,
    public_jwk: JSON.stringify(key.publicJwk),
    created_at: now,
    activates_at: activatesAt,
  });
}

/**
 * Keys a verifier may meet: the signing one, one about to sign, and those retired within the
 * retention. Newest activation first.
 */
function publishedKeys(knex: Knex, now: Date, accessTokenTtlSeconds: number) {
  const cutoff = new Date(now.getTime() - keyRetentionSeconds(accessTokenTtlSeconds) * 1000);
  return knex<SigningKeyRow>('signing_keys')
    .whereNull('retired_at')
    .orWhere('retired_at', '>', cutoff)
    .orderBy('activates_at', 'desc')
    .orderBy('created_at', 'desc')
    .orderBy('kid')
    .select('kid', 'private_key_pem', 'public_jwk', 'created_at', 'activates_at', 'retired_at');
}

/** The key that signs at `now`: activated, not yet retired, the most recently activated. */
function signingKeyAt(rows: SigningKeyRow[], now: Date): SigningKeyRow | undefined {
  return rows.find((row) => row.activates_at <= now && (row.retired_at === null || row.retired_at > now));
}

/**
 * Creates the first signing key when there is none. Keys live in the database so that every
 * auth instance signs with the same key; the advisory lock makes two instances starting
 * together create one key, not two.
 */
export async function ensureSigningKey(knex: Knex, options: { logger: Logger; clock: () => Date }): Promise<void> {
  const hasActiveKey = async (db: Knex) => (await db('signing_keys').whereNull('retired_at').first('kid')) !== undefined;
  if (await hasActiveKey(knex)) return;
  const key = await generateKey();
  await knex.transaction(async (trx) => {
    await trx.raw(KEYS_LOCK);
    // Another instance may have created one while this one was generating.
    if (await hasActiveKey(trx)) return;
    const now = options.clock();
    await insertKey(trx, key, now, now);
    options.logger.info({ kid: key.kid }, 'created the first signing key');
  });
}

export interface Rotation {
  kid: string;
  /** When the new key starts signing; until then it is only published. */
  activatesAt: Date;
  /** Keys that stopped signing now; still published for the retention. */
  retired: string[];
  /** Keys deleted: retired longer than the retention ago, or all old ones with `removeOld`. */
  removed: string[];
}

/**
 * Rotates the signing key. The new key is published at once and signs from `activateAfterSeconds`
 * on; the previous keys stop signing then and stay published for `keyRetentionSeconds` after.
 * Keys retired longer ago are deleted.
 *
 * @remarks The delay lets verifiers that cache the JWKS meet the new key before any token uses
 * it: content refetches on an unknown kid at most every `JWKS_MIN_REFETCH_MS` (10 s), so a
 * delay longer than that means the first token of the new key is never refused.
 * `removeOld` is for a key that has leaked: the new key signs at once and every previous key
 * is deleted, so tokens they signed stop verifying as soon as verifiers refresh their JWKS.
 */
export async function rotateSigningKey(
  knex: Knex,
  options: { clock: () => Date; accessTokenTtlSeconds: number; activateAfterSeconds?: number; removeOld?: boolean },
): Promise<Rotation> {
  const key = await generateKey();
  return knex.transaction(async (trx) => {
    await trx.raw(KEYS_LOCK);
    const now = options.clock();
    const delaySeconds = options.removeOld ? 0 : (options.activateAfterSeconds ?? 0);
    const activatesAt = new Date(now.getTime() + delaySeconds * 1000);
    const cutoff = new Date(now.getTime() - keyRetentionSeconds(options.accessTokenTtlSeconds) * 1000);
    const kid = key.kid;
    await insertKey(trx, key, now, activatesAt);
    const retiredRows: { kid: string }[] = await trx('signing_keys')
      .whereNot({ kid })
      .where((where) => where.whereNull('retired_at').orWhere('retired_at', '>', activatesAt))
      .update({ retired_at: activatesAt })
      .returning('kid');
    const removedRows: { kid: string }[] = await trx('signing_keys')
      .whereNot({ kid })
      .where((where) => (options.removeOld ? where.whereNotNull('retired_at') : where.where('retired_at', '<=', cutoff)))
      .delete()
      .returning('kid');
    const removed = removedRows.map((row) => row.kid);
    const rotation = { kid, activatesAt, retired: retiredRows.map((row) => row.kid).filter((retired) => !removed.includes(retired)), removed };
    await createEventRepository(trx).recordEvent({ type: 'key.rotated', details: { ...rotation }, at: now });
    return rotation;
  });
}

/**
 * The signing keys as one instance sees them: the active private key for signing, and the
 * published public keys for verifying its own tokens. Call `ensureSigningKey` first.
 */
export async function createKeyStore(knex: Knex, options: KeyStoreOptions): Promise<KeyStore> {
  let current: SigningKey | undefined;
  let publicKeys = new Map<string, KeyObject>();
  let lastReload = 0;

  async function reload(): Promise<void> {
    lastReload = Date.now();
    const now = options.clock();
    const rows = await publishedKeys(knex, now, options.accessTokenTtlSeconds);
    const active = signingKeyAt(rows, now);
    if (!active) throw new Error('no active signing key: run the auth service once, or `cli rotate-keys`');
    if (current?.kid !== active.kid) {
      if (current) options.logger.info({ kid: active.kid, previous: current.kid }, 'signing with a new key');
      current = { kid: active.kid, privateKey: createPrivateKey(active.private_key_pem) };
    }
    publicKeys = new Map(rows.map((row) => [row.kid, createPublicKey({ key: { ...publicJwkOf(row) }, format: 'jwk' })]));
  }

  /** Rereads, and on failure logs and keeps the keys it has. */
  const rereadQuietly = () => reload().catch((err: unknown) => options.logger.warn({ err }, 'could not reread the signing keys'));

  await reload();
  return {
    get current(): SigningKey {
      if (!current) throw new Error('signing keys not loaded');
      return current;
    },
    async publicJwks() {
      const rows = await publishedKeys(knex, options.clock(), options.accessTokenTtlSeconds);
      return { keys: rows.map(publicJwkOf) };
    },
    knownKey: (kid) => publicKeys.get(kid),
    async getKey(kid) {
      const known = publicKeys.get(kid);
      if (known) return known;
      // A kid from a rotation this instance has not reread yet; at most one reread a second.
      if (Date.now() - lastReload < 1_000) return undefined;
      await rereadQuietly();
      return publicKeys.get(kid);
    },
    reload,
    startReloading: (intervalMs) => repeatEvery(intervalMs, rereadQuietly),
  };
}
