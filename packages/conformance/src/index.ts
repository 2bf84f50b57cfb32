// The public API of the conformance checks; the command line is cli.ts.
export { CHECKS, CHECK_GROUPS, formatResult, formatSummary, runChecks } from './checks';
export type { Check, CheckContext, CheckGroup, CheckResult, RunOptions } from './checks';
export type { TestUser } from './context';
export type { HttpResponse, RequestOptions } from './http';
export { base64url, createAttackerKey, decodeJwtPart, signRs256, type AttackerKey, type JwtPart } from './jwt';
