import { z } from 'zod';
import { EVENT_TYPES } from '../../db/repositories/event.repository';

/** A user id in a path or query: decimal digits only, a positive PostgreSQL integer. */
const userId = z
  .string()
  .regex(/^[1-9][0-9]{0,9}$/, 'must be a user id')
  .transform(Number)
  .pipe(z.number().max(2_147_483_647, 'must be a user id'));

export const userParams = z.object({ id: userId });

export const listUsersQuery = z.strictObject({
  /** Part of a username or email. */
  q: z
    .string()
    .trim()
    .max(254)
    // PostgreSQL text cannot hold NUL.
    .refine((value) => !value.includes('\0'), 'must not contain NUL characters')
    .optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

// Roles are checked against the known ones in the handler, for the tutorial's message.
export const setRolesBody = z.strictObject({
  roles: z.array(z.string().max(32)).min(1, 'must name at least one role').max(10),
});

export const listEventsQuery = z.strictObject({
  userId: userId.optional(),
  type: z.enum(EVENT_TYPES).optional(),
  /** The `nextBefore` of the previous page. */
  before: z.string().regex(/^[1-9][0-9]{0,17}$/, 'must be an event id').transform(Number).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});
