import { BadRequestError, UnauthorizedError } from '@gatehouse/common';
import { ROLES, signAccessToken, type RoleName } from '@gatehouse/tokens';
import { takenError, type UserRecord, type UserRepository } from '../db/repositories/user.repository';
import type { PasswordHasher } from './passwords';
import type { KeyStore } from './signing-keys';

export interface TokenSettings {
  issuer: string;
  audience: string;
  accessTokenTtlSeconds: number;
}

export interface SignUpInput {
  username: string;
  email: string;
  password: string;
  roles?: string[];
}

export interface SignInResult {
  user: UserRecord;
  accessToken: string;
  expiresIn: number;
}

function isRole(name: string): name is RoleName {
  return ROLES.some((role) => role === name);
}

/** Sign-up and sign-in: the business rules, apart from HTTP. */
export function createAuthService(deps: {
  users: UserRepository;
  passwords: PasswordHasher;
  keys: KeyStore;
  tokens: TokenSettings;
  clock: () => Date;
}) {
  const { users, passwords, keys, tokens, clock } = deps;

  return {
    /**
     * Registers a plain `user`. Requested roles must exist (the tutorial's 400 otherwise) but are
     * never granted: self sign-up cannot make a moderator or an admin; only an operator can.
     */
    async signUp(input: SignUpInput): Promise<UserRecord> {
      const unknownRole = input.roles?.find((role) => !isRole(role));
      if (unknownRole !== undefined) {
        // The tutorial reports a taken username or email before an unknown role.
        const taken = await users.findTakenField(input.username, input.email);
        if (taken) throw takenError(taken);
        throw new BadRequestError('user.unknown_role', `Failed! Role does not exist: ${unknownRole}`);
      }
      const passwordHash = await passwords.hash(input.password);
      return users.insertUser({ username: input.username, email: input.email, passwordHash, roles: ['user'] });
    },

    /**
     * Checks a username and password and issues an access token. Unknown user and wrong
     * password fail alike: same status, same body, one bcrypt comparison each.
     */
    async signIn(input: { username: string; password: string }): Promise<SignInResult> {
      const user = await users.findUserByUsername(input.username);
      const valid = await passwords.verify(input.password, user?.passwordHash);
      if (!user || !valid) {
        throw new UnauthorizedError('auth.invalid_credentials', 'Invalid username or password!');
      }
      const nowSeconds = Math.floor(clock().getTime() / 1000);
      const { token } = signAccessToken(user, {
        key: keys.current,
        issuer: tokens.issuer,
        audience: tokens.audience,
        ttlSeconds: tokens.accessTokenTtlSeconds,
        nowSeconds,
      });
      return { user, accessToken: token, expiresIn: tokens.accessTokenTtlSeconds };
    },
  };
}

export type AuthService = ReturnType<typeof createAuthService>;
