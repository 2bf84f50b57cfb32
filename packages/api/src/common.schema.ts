import { z } from 'zod';

/** A moment as the API sends it: `Date.toISOString()`, UTC. */
export const timestamp = z.iso.datetime();

/**
 * The body of every error response, whichever service or the gateway wrote it (the common
 * `errorHandler()`, or the gateway's proxy for 502/504).
 */
export const errorBody = z.strictObject({
  message: z.string().meta({ description: "What went wrong; the tutorial's text where it has one." }),
  code: z.string().meta({ description: 'Stable `area.reason` string: what clients branch on.' }),
  details: z.unknown().optional().meta({
    description: 'More about the error: for `request.invalid_input`, one `{path, message}` per problem.',
  }),
  requestId: z.string().meta({ description: 'The `x-request-id` of the request, as found in the logs.' }),
});

/** The tutorial's welcome: its clients fetch `GET /` to see that the API is up. */
export const welcomeResponse = z.strictObject({
  message: z.literal('Welcome to the Node.js JWT Authentication application.'),
});

export const livenessResponse = z.strictObject({ status: z.literal('ok') });

export const readinessResponse = z.strictObject({
  status: z.enum(['ready', 'unready']),
  checks: z.record(z.string(), z.enum(['ok', 'failing'])).meta({ description: 'Each dependency checked, by name.' }),
});
