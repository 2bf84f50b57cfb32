import { z } from 'zod';
import { REFRESH_TOKEN_PATTERN } from '../../services/refresh-tokens';

/** bcrypt reads at most 72 bytes; a longer password would be silently truncated, so refuse it. */
const BCRYPT_MAX_BYTES = 72;

const withinBcryptLimit = (schema: z.ZodString) =>
  schema.refine((value) => Buffer.byteLength(value, 'utf8') <= BCRYPT_MAX_BYTES, {
    message: `must be at most ${BCRYPT_MAX_BYTES} bytes in UTF-8`,
  });

/** What a username may be made of; sign-up enforces it, sign-in relies on it. */
export const USERNAME_PATTERN = /^[A-Za-z0-9._-]{3,32}$/;

export const signUpBody = z
  .strictObject({
    username: z
      .string()
      .min(3, 'must be at least 3 characters')
      .max(32, 'must be at most 32 characters')
      .regex(/^[A-Za-z0-9._-]+$/, 'may contain only letters, digits, ".", "_" and "-"'),
    email: z
      .string()
      .trim()
      .max(254, 'must be at most 254 characters')
      .pipe(z.email('must be an email address'))
      .transform((email) => email.toLowerCase()),
    password: withinBcryptLimit(z.string().min(8, 'must be at least 8 characters')),
    // The tutorial's clients may send roles; they are checked to exist, never granted.
    roles: z.array(z.string().max(32)).max(10).optional(),
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
