import { z } from 'zod';

/** bcrypt reads at most 72 bytes; a longer password would be silently truncated, so refuse it. */
const BCRYPT_MAX_BYTES = 72;

const withinBcryptLimit = (schema: z.ZodString) =>
  schema.refine((value) => Buffer.byteLength(value, 'utf8') <= BCRYPT_MAX_BYTES, {
    message: `must be at most ${BCRYPT_MAX_BYTES} bytes in UTF-8`,
  });

/** What a username may be made of; sign-up enforces it, sign-in relies on it. */
export const USERNAME_PATTERN = /^[A-Za-z0-9._-]{3,32}$/;

/**
 * Refresh tokens are 256 random bits, base64url: 43 characters (the auth service's
 * `generateRefreshToken()` makes them).
 */
export const REFRESH_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** A compact JWS: three base64url parts. */
const ACCESS_TOKEN_PATTERN = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** The roles a user can hold, as the admin API names them. */
export const ROLE_NAMES = ['user', 'moderator', 'admin'] as const;

/** The same roles as the tutorial's clients know them, in sign-in and `/me`. */
export const AUTHORITIES = ['ROLE_USER', 'ROLE_MODERATOR', 'ROLE_ADMIN'] as const;

// ---- requests ----

export const signUpBody = z.strictObject({
  username: z
    .string()
    .min(3, 'must be at least 3 characters')
    .max(32, 'must be at most 32 characters')
    .regex(/^[A-Za-z0-9._-]+$/, 'may contain only letters, digits, ".", "_" and "-"')
    .meta({ description: 'Unique regardless of case.' }),
  email: z
    .string()
    .trim()
    .max(254, 'must be at most 254 characters')
    .pipe(z.email('must be an email address'))
    .transform((email) => email.toLowerCase())
    // The pipe hides the email check from the JSON Schema of the input; say it here.
    .meta({ format: 'email', description: 'Stored lower-case; unique.' }),
  password: withinBcryptLimit(z.string().min(8, 'must be at least 8 characters')).meta({
    description:
      'At most 72 bytes in UTF-8 (bcrypt ignores the rest, so longer is refused). Refused when too guessable: ' +
      'an offline zxcvbn score below 2, also against the username and email.',
  }),
  // The tutorial's clients may send roles; they are checked to exist, never granted.
  roles: z
    .array(z.string().max(32))
    .max(10)
    .optional()
    .meta({ description: 'Accepted for the tutorial\'s clients: each must exist, none is granted. A new user has `user` only.' }),
});
// Whether the password is too guessable is checked by the service, off the event loop.
export type SignUpBody = z.infer<typeof signUpBody>;

export const signInBody = z.strictObject({
  // Any username that could exist; PostgreSQL text cannot hold NUL, so refuse it here.
  username: z
    .string()
    .min(1, 'is required')
    .max(254)
    .refine((value) => !value.includes('\0'), 'must not contain NUL characters'),
  password: withinBcryptLimit(z.string().min(1, 'is required')),
});
export type SignInBody = z.infer<typeof signInBody>;

const refreshToken = z
  .string({ error: 'is required' })
  .max(256)
  .regex(REFRESH_TOKEN_PATTERN, 'must be a refresh token as issued by sign-in');

export const refreshBody = z.strictObject({ refreshToken });

/** Sign-out names the session by its refresh token, or else by the access token's session. */
export const signOutBody = z.strictObject({ refreshToken: refreshToken.optional() });

// ---- responses ----

export const signUpResponse = z.strictObject({ message: z.literal('User registered successfully!') });

/** The user as the tutorial's clients know them: roles spelt `ROLE_USER`. */
export const profile = z.strictObject({
  id: z.int().positive(),
  username: z.string(),
  email: z.email(),
  roles: z.array(z.enum(AUTHORITIES)),
});

/** A new access token and its refresh token. */
export const tokenResponse = z.strictObject({
  accessToken: z.string().regex(ACCESS_TOKEN_PATTERN).meta({ description: 'RS256 JWT; send it as `x-access-token` or `Authorization: Bearer`.' }),
  refreshToken: z.string().regex(REFRESH_TOKEN_PATTERN).meta({ description: 'Opaque; good for one refresh.' }),
  tokenType: z.literal('Bearer'),
  expiresIn: z.int().positive().meta({ description: 'Seconds until the access token expires.' }),
});

export const signInResponse = z.strictObject({ ...profile.shape, ...tokenResponse.shape });

export const meResponse = z.strictObject({ ...profile.shape, createdAt: z.iso.datetime() });

export const signOutResponse = z.strictObject({ message: z.literal("You've been signed out!") });

export const signOutAllResponse = z.strictObject({ message: z.literal("You've been signed out of every session!") });

const base64url = z.string().regex(/^[A-Za-z0-9_-]+$/);

/** One public signing key (RFC 7517); `kid` is its RFC 7638 thumbprint. */
export const publicJwk = z.strictObject({
  kty: z.literal('RSA'),
  kid: z.string(),
  use: z.literal('sig'),
  alg: z.literal('RS256'),
  n: base64url,
  e: base64url,
});

export const jwksResponse = z.strictObject({ keys: z.array(publicJwk) });
