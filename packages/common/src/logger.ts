import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * Paths pino blanks out wherever they appear in a log line. Tokens and passwords must never
 * reach a log, even when a whole request or error object is logged by mistake.
 */
export const REDACTED_PATHS = [
  'password',
  'token',
  'accessToken',
  'refreshToken',
  'authorization',
  '*.password',
  '*.token',
  '*.accessToken',
  '*.refreshToken',
  '*.authorization',
  '*.headers.authorization',
  '*.headers["x-access-token"]',
  'headers["x-access-token"]',
];

/**
 * Creates the service's root logger: JSON lines on stdout (or `destination`), one field
 * `service` naming the process.
 *
 * @remarks Without a `destination`, pino writes to stdout asynchronously (sonic-boom): a reader
 * that stalls (a full pipe, a stuck log driver) does not stall the service; lines wait in
 * memory until it reads again (log-backpressure.e2e.test.ts holds that). The price: while it
 * stalls, that memory grows with every line, and the flush at exit waits for it.
 */
export function createLogger(options: { service: string; level?: string; destination?: DestinationStream }): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: options.service },
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination,
  );
}

/** A logger that writes nothing, for tests that do not look at logs. */
export function createSilentLogger(): Logger {
  return pino({ level: 'silent' });
}
