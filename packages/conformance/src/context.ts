import { randomBytes, type JsonWebKey } from 'node:crypto';
import { describeResponse, isRecord, sendRequest, type HttpResponse, type RequestOptions } from './http';
import { createAttackerKey, type AttackerKey } from './jwt';

/** The groups checks belong to, in the order they run. */
export const CHECK_GROUPS = ['tokens', 'enumeration', 'brute-force', 'privilege', 'bad-input', 'headers', 'rate-limit'] as const;
/** One of `CHECK_GROUPS`. */
export type CheckGroup = (typeof CHECK_GROUPS)[number];

/** One conformance check, as data. */
export interface Check {
  readonly group: CheckGroup;
  readonly name: string;
  /**
   * Skipped unless the caller opts in, because running it has side effects on the deployment
   * beyond the check's own users (the rate limit blocks the caller's address for a while).
   */
  readonly optIn?: 'rate-limit';
  /**
   * Runs the check. Resolves when the deployment behaves, optionally with a detail for the
   * PASS line (a measured ratio); throws an Error whose message says what was wrong.
   */
  run(ctx: CheckContext): Promise<string | void>;
}

/** A user the checks made up: valid sign-up input, with a strong random password. */
export interface TestUser {
  username: string;
  email: string;
  password: string;
}

/** What a check gets to talk to the deployment. Users are always fresh, never shared. */
export interface CheckContext {
  /** The deployment's gateway, e.g. `http://127.0.0.1:8080`. */
  readonly base: string;
  /** Sends a request to the gateway (see `sendRequest`). */
  request(method: string, path: string, options?: RequestOptions): Promise<HttpResponse>;
  /** New random credentials, not yet signed up. */
  newUser(): TestUser;
  /** Signs up a new random user (or `user`) and insists on 201. */
  signUp(user?: TestUser): Promise<TestUser>;
  /** Signs `user` in and returns the answer, whatever it is. */
  signIn(user: Pick<TestUser, 'username' | 'password'>, options?: RequestOptions): Promise<HttpResponse>;
  /** Signs up a new user, signs it in and returns its access token. */
  freshAccessToken(): Promise<string>;
  /** The deployment's published signing keys; fetched once per run. */
  jwks(): Promise<JsonWebKey[]>;
  /** A key pair the deployment has never seen; made once per run. */
  attackerKey(): Promise<AttackerKey>;
}

/** Lowercase hex, `bytes` random bytes long. */
export function randomHex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

function once<T>(make: () => Promise<T>): () => Promise<T> {
  let value: Promise<T> | undefined;
  return () => (value ??= make());
}

async function fetchJwks(base: string): Promise<JsonWebKey[]> {
  const res = await sendRequest(base, 'GET', '/api/auth/.well-known/jwks.json');
  const keys = isRecord(res.json) ? res.json.keys : undefined;
  if (res.status !== 200 || !Array.isArray(keys)) throw new Error(`the JWKS could not be read: ${describeResponse(res)}`);
  return keys.filter(isRecord);
}

/** Builds the context one run of the checks shares (the JWKS and attacker key are cached). */
export function createCheckContext(base: string): CheckContext {
  const request = (method: string, path: string, options?: RequestOptions) => sendRequest(base, method, path, options);
  const newUser = (): TestUser => {
    const tag = randomHex(6);
    return { username: `conf_${tag}`, email: `conf_${tag}@example.test`, password: `pw-${randomHex(8)}-Correct-Horse` };
  };
  const signIn = (user: Pick<TestUser, 'username' | 'password'>, options?: RequestOptions) =>
    request('POST', '/api/auth/signin', { ...options, json: { username: user.username, password: user.password } });

  async function signUp(user: TestUser = newUser()): Promise<TestUser> {
    const res = await request('POST', '/api/auth/signup', { json: user });
    if (res.status !== 201) throw new Error(`could not sign up a fresh user: ${describeResponse(res)}`);
    return user;
  }

  return {
    base,
    request,
    newUser,
    signUp,
    signIn,
    async freshAccessToken() {
      const res = await signIn(await signUp());
      const token = isRecord(res.json) ? res.json.accessToken : undefined;
      if (res.status !== 200 || typeof token !== 'string') throw new Error(`could not sign in a fresh user: ${describeResponse(res)}`);
      return token;
    },
    jwks: once(() => fetchJwks(base)),
    attackerKey: once(createAttackerKey),
  };
}
