import { z } from 'zod';
import { ROLE_NAMES } from './auth.schema';
import { timestamp } from './common.schema';

/** What the audit log records. A closed list, so the admin API can filter by it. */
export const EVENT_TYPES = [
  'user.signup',
  'user.roles_changed',
  'user.disabled',
  'user.enabled',
  'admin.created',
  'signin.success',
  'signin.failure',
  'token.refresh',
  'token.reuse_detected',
  'signout',
  'signout.all',
  'key.rotated',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

// ---- requests ----

/** A user id in a path or query: decimal digits only, a positive PostgreSQL integer. */
const userId = z
  .string()
  .regex(/^[1-9][0-9]{0,9}$/, 'must be a user id')
  .transform(Number)
  .pipe(z.number().max(2_147_483_647, 'must be a user id'));

export const userParams = z.object({ id: userId });

export const listUsersQuery = z.strictObject({
  q: z
    .string()
    .trim()
    .max(254)
    // PostgreSQL text cannot hold NUL.
    .refine((value) => !value.includes('\0'), 'must not contain NUL characters')
    .optional()
    .meta({ description: 'Part of a username or email.' }),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

// Roles are checked against the known ones in the handler, for the tutorial's message.
export const setRolesBody = z.strictObject({
  roles: z
    .array(z.string().max(32))
    .min(1, 'must name at least one role')
    .max(10)
    .meta({ description: `The user's roles from now on, replacing the current ones: ${ROLE_NAMES.map((role) => `\`${role}\``).join(', ')}.` }),
});

export const listEventsQuery = z.strictObject({
  userId: userId.optional().meta({ description: 'Only events about this user.' }),
  type: z.enum(EVENT_TYPES).optional(),
  before: z
    .string()
    .regex(/^[1-9][0-9]{0,17}$/, 'must be an event id')
    .transform(Number)
    .optional()
    .meta({ description: 'The `nextBefore` of the previous page.' }),
  limit: z.coerce.number().int().min(1).max(200).default(50),
});

// ---- responses ----

/** A user as admins see them: plain role names, the names `PUT …/roles` takes. */
export const adminUser = z.strictObject({
  id: z.int().positive(),
  username: z.string(),
  email: z.email(),
  roles: z.array(z.enum(ROLE_NAMES)),
  disabled: z.boolean(),
  createdAt: timestamp,
});

export const userPage = z.strictObject({
  users: z.array(adminUser),
  total: z.int().min(0).meta({ description: 'Users matching `q`, on every page.' }),
  limit: z.int().positive(),
  offset: z.int().min(0),
});

export const setRolesResponse = z.strictObject({ message: z.literal('User roles updated successfully!'), user: adminUser });
export const disableUserResponse = z.strictObject({ message: z.literal('User disabled.'), user: adminUser });
export const enableUserResponse = z.strictObject({ message: z.literal('User enabled.'), user: adminUser });

/** One audit event. Never a password or a token. */
export const authEvent = z.strictObject({
  id: z.int().positive(),
  type: z.enum(EVENT_TYPES),
  userId: z.int().positive().nullable().meta({ description: 'The user the event is about.' }),
  actorId: z.int().positive().nullable().meta({ description: 'The admin who did it, when not the user themself.' }),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  details: z.record(z.string(), z.unknown()).nullable(),
  createdAt: timestamp,
});

export const eventPage = z.strictObject({
  events: z.array(authEvent).meta({ description: 'Newest first.' }),
  nextBefore: z.int().positive().nullable().meta({ description: 'Pass as `before` for the next page; null on the last one.' }),
});
