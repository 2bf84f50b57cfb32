import type { Logger } from 'pino';

// What the shared middleware puts on `ctx.state` for every request of every service.
declare module 'koa' {
  interface DefaultState {
    /** Set by `requestId()`: the caller's `x-request-id` when well-formed, else a new one. */
    requestId: string;
    /**
     * Set by `requestId()` (absent before it runs): the service's logger. Lines about one
     * request go through `requestLog(ctx)`, which binds its id.
     */
    logger?: Logger;
  }
}

export {};
