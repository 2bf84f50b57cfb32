import { z } from 'zod';

/** The roles Gatehouse knows, lowest first. Created by the auth service's first migration. */
export const ROLES = ['user', 'moderator', 'admin'] as const;
export type RoleName = (typeof ROLES)[number];

/** The JWT algorithm Gatehouse signs with; verification accepts this one and no other. */
export const ACCESS_TOKEN_ALGORITHM = 'RS256';

/** Tokens longer than this are refused before any parsing (RFC 8725 §3.13 spirit: bound inputs). */
export const MAX_TOKEN_LENGTH = 8192;

/**
 * Claims of an access token. `id` duplicates `sub` as a number because the tutorial's
 * clients read `decoded.id`. `ver` is the user's token version when the token was issued: a
 * token whose `ver` is below the version in the revocation feed is refused. `sid` names the
 * session (refresh-token family) the token was issued for.
 */
export const accessTokenClaimsSchema = z.object({
  sub: z.string().min(1),
  id: z.number().int().positive(),
  username: z.string().min(1),
  roles: z.array(z.enum(ROLES)),
  ver: z.number().int().nonnegative(),
  sid: z.string().max(64).optional(),
  iss: z.string(),
  aud: z.union([z.string(), z.array(z.string())]),
  iat: z.number(),
  exp: z.number(),
  jti: z.string(),
});

export type AccessTokenClaims = z.infer<typeof accessTokenClaimsSchema>;

/** `ROLE_MODERATOR`, as the tutorial's sign-in response spells roles. */
export function toAuthority(role: RoleName): string {
  return `ROLE_${role.toUpperCase()}`;
}
